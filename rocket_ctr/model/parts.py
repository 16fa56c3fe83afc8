"""Building blocks of ``RocketModel`` that need no model: its banks and MLPs from the config, the
config checks that need the FeatureSpec, and a map over a bank's lookup."""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.config.schema import ModelConfig
from rocket_ctr.config.validation import check_booster_options
from rocket_ctr.errors import FieldError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.bank import EmbeddingBank
from rocket_ctr.model.layers.mlp import MLP


def bank(spec: FeatureSpec, cfg: ModelConfig, name: str, width: int | None = None) -> EmbeddingBank:
    """A bank of the served columns (booster-only ones have their own tables: ``booster_columns``),
    ``width`` wide (default: ``embedding_dim``)."""
    return EmbeddingBank(spec.served(), width or cfg.embedding_dim, init_std=cfg.embedding_init_std,
                         l2=cfg.embedding_l2, recency=cfg.history_recency, name=name)


def widen(shared: dict, own: dict) -> dict:
    """Two banks' lookups of the same rows as one: every embedding is the shared one with the
    booster's own appended (lengths, widths and valid-step indices are the same in both)."""
    return tf.nest.map_structure(lambda a, b: tf.concat([a, b], -1) if a.dtype.is_floating else a, shared, own)


def check_model_config(spec: FeatureSpec, cfg: ModelConfig) -> None:
    """Raises FieldError for history limits beyond the FeatureSpec's, a residual booster without a
    light tower to add to (only rocket mode trains the two together) and own booster embeddings
    under a shared attention."""
    check_booster_options(cfg)  # RocketConfig checks them too; a bare ModelConfig only here
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
