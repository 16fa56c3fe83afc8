"""Building blocks of ``RocketModel`` that need no model: its banks and MLPs from the config, the
config checks and resolutions that need the FeatureSpec, and a map over a bank's lookup."""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.config.hint import HintConfig
from rocket_ctr.config.schema import ModelConfig
from rocket_ctr.config.validation import check_booster_options, is_wide_auto, wide_crosses
from rocket_ctr.errors import FieldError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.bank import EmbeddingBank
from rocket_ctr.model.layers.booster import ColumnEmbeddings, CrossNetwork, WideTerms
from rocket_ctr.model.layers.features import FeatureEncoders
from rocket_ctr.model.layers.mlp import MLP


def bank(spec: FeatureSpec, cfg: ModelConfig, name: str, width: int | None = None,
         batch_l2: float = 0.0) -> EmbeddingBank:
    """A bank of the served columns (booster-only ones have their own tables: ``booster_columns``),
    ``width`` wide (default: ``embedding_dim``), with mini-batch aware L2 ``batch_l2``."""
    return EmbeddingBank(spec.served(), width or cfg.embedding_dim, init_std=cfg.embedding_init_std,
                         l2=cfg.embedding_l2, recency=cfg.history_recency, batch_l2=batch_l2, name=name)


def booster_only_layers(spec: FeatureSpec, cfg: ModelConfig, towers: tuple) -> dict:
    """What only the booster reads, by ``RocketModel`` attribute name (None where the config asks for
    none; all None without a booster): the booster-only columns' tables, its own embedding tables,
    its cross stack, its wide part and the booster-only numeric/multi-hot features."""
    has = "booster" in towers
    columns = tuple(f for f in spec.booster_only_features if not f.wide_only) if has else ()
    extras = spec.booster_only_extra_features if has else ()
    init = {"init_std": cfg.embedding_init_std, "l2": cfg.embedding_l2}
    ids, crosses = wide_part(spec, cfg)
    return {
        "booster_columns": ColumnEmbeddings(columns, cfg.embedding_dim, name="booster_columns", **init)
        if columns else None,
        "booster_embeddings": bank(spec, cfg, "booster_embeddings", cfg.booster_embedding_dim,
                                   batch_l2=cfg.booster_embedding_l2) if has and cfg.booster_embedding_dim else None,
        "booster_cross": CrossNetwork(cfg.booster_cross, l2=cfg.booster.l2, name="booster_cross")
        if has and cfg.booster_cross else None,
        "booster_wide": WideTerms(spec, crosses, ids=ids, name="booster_wide") if has and (ids or crosses) else None,
        "booster_extras": FeatureEncoders(extras, cfg.embedding_dim, name="booster_extras", **init) if extras else None,
    }


# hint weight auto: λ where the light tower embeds the user id. After the warm-up, λ 0.5 lifted the light
# tower on both MovieLens logs (many rows per user) and cost the leave-one-out review logs, where the light
# tower has no user id to learn the booster's per-user lead with (docs/results/boosters.md).
AUTO_HINT_WEIGHT = 0.5


def embeds_user_id(spec: FeatureSpec) -> bool:
    """Whether the user id is embedded for both towers (a served user feature: enough rows per user)."""
    return spec.user_id in {f.name for f in spec.served().user_features}


def hint_weight(spec: FeatureSpec, hint: HintConfig) -> float:
    """λ of eq. (1): ``hint.weight``; under auto (None) :data:`AUTO_HINT_WEIGHT` where the user id is
    embedded for both towers, else 0."""
    if hint.weight is not None:
        return float(hint.weight)
    return AUTO_HINT_WEIGHT if embeds_user_id(spec) else 0.0


def wide_part(spec: FeatureSpec, cfg: ModelConfig) -> tuple[bool, tuple]:
    """``(per-id scalars?, crosses)`` of the booster's wide part. Under ``booster_wide_crosses auto``: where
    the user id is embedded for both towers (a served user feature: enough rows per user), the user id
    crossed with every candidate-side sequence feature but the candidate id, and the per-id scalars;
    elsewhere none (a user id too sparse to embed is too sparse for per-user pairs), the per-id scalars
    only if ``booster_wide`` asks for them."""
    if not is_wide_auto(cfg.booster_wide_crosses):
        return cfg.booster_wide, wide_crosses(cfg.booster_wide_crosses)
    if not embeds_user_id(spec):
        return cfg.booster_wide, ()
    return True, tuple((spec.user_id, f.name) for f in spec.sequence_features[1:])


def widen(shared: dict, own: dict) -> dict:
    """Two banks' lookups of the same rows as one: every embedding is the shared one with the
    booster's own appended (lengths, widths and valid-step indices are the same in both)."""
    return tf.nest.map_structure(lambda a, b: tf.concat([a, b], -1) if a.dtype.is_floating else a, shared, own)


def check_model_config(spec: FeatureSpec, cfg: ModelConfig) -> None:
    """Raises FieldError for history limits beyond the FeatureSpec's, a residual booster without a
    light tower to add to (only rocket mode trains the two together), own booster embeddings
    under a shared attention and wide crosses that are not a user-side and a candidate-side id
    feature of the FeatureSpec (booster-only ones included), and ``wide_only`` features that no
    cross reads."""
    check_booster_options(cfg)  # RocketConfig checks them too; a bare ModelConfig only here
    user_side = {f.name for f in spec.user_features}  # booster-only ones too: the wide part is the booster's
    candidate_side = {f.name for f in (*spec.sequence_features, *spec.item_features)}
    crosses = wide_part(spec, cfg)[1]
    for user, item in crosses:
        if user not in user_side or item not in candidate_side:
            raise FieldError(f"{{model.booster_wide_crosses}} {user}*{item}: crosses a user-side id feature "
                             f"({sorted(user_side) or 'none'}) with a candidate-side one ({sorted(candidate_side)}); "
                             "the user id is a feature only when embedded (--user-id-embedding) or declared "
                             "booster-only in the FeatureSpec")
    unread = [f.name for f in spec.booster_only_features if f.wide_only and not any(f.name in p for p in crosses)]
    if unread and "booster" in cfg.towers:
        raise FieldError(f"{{model.booster_wide_crosses}} names none of the wide_only features {unread}: only "
                         f"the booster's wide crosses read them; cross them (e.g. {unread[0]}*item_id) or drop "
                         "wide_only from the FeatureSpec")
    for name in ("light_history", "booster_history"):
        steps = getattr(cfg, name)
        if steps is not None and steps > spec.max_history:
            raise FieldError(f"{{model.{name}}} must be <= the FeatureSpec's max_history ({spec.max_history}), "
                             f"got {steps}")


def map_floats(fn, embedded: dict) -> dict:
    """``fn`` on every float tensor of a bank's lookup (the lengths stay)."""
    return tf.nest.map_structure(lambda t: fn(t) if t.dtype.is_floating else t, embedded)


def mlp_of(tower, name: str) -> MLP:
    """The MLP of a TowerConfig."""
    return MLP(tower.units, tower.activation, tower.batch_norm, tower.dropout, tower.l2, name=name)
