"""The FeatureSpec a training run uses, decided before TensorFlow starts (``launch-local`` checks
the workers' logs with it in its own process), and whether it embeds the user id."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.config.validation import wide_crosses
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.log_gate import CheckedLog, find_feature_spec
from rocket_ctr.io.parquet_schema import is_string

if TYPE_CHECKING:
    from rocket_ctr.train.warm_start import WarmStartSource


def run_spec(spec: FeatureSpec | None, train, source: WarmStartSource | None,
             config: RocketConfig) -> tuple[FeatureSpec, str | None]:
    """The run's FeatureSpec (given, beside the data, the source's or the reference schema) and a
    note when the mode reads none of its booster-only columns (they are then left out)."""
    spec = spec or find_feature_spec(train) or (source.spec if source else FeatureSpec())
    if "booster" in config.model.towers or not spec.booster_only_columns:
        return spec, None
    # nothing would read them: the run (its data, run dir and exports) goes without them
    note = (f"mode {config.model.mode}: the booster-only columns {list(spec.booster_only_columns)} "
            "are ignored (only a booster reads them; the logs need not hold them)")
    return spec.served(), note


# user_id_embedding auto: embed the user id from this many training rows per user. The leave-one-out logs
# (~14 rows per user) gained nothing from it, the time-ordered ones (~115-145) did; at 50 each user's row is
# updated ~50 times an epoch, enough to learn more than noise.
ROWS_PER_USER_TO_EMBED = 50
# hash buckets: 8 or more per distinct user leave at most ~12% of users sharing their row with another (collisions
# blur users together); the cap bounds the table's memory (2**20 rows x embedding_dim floats, in the export too)
BUCKETS_PER_USER, MIN_USER_BUCKETS, MAX_USER_BUCKETS = 8, 1024, 2**20


def user_id_buckets(users: int) -> int:
    """Hash buckets of the user id embedding for ``users`` distinct users: the next power of two
    >= 8 per user, within [1024, 2**20]."""
    wanted = max(BUCKETS_PER_USER * users, MIN_USER_BUCKETS)
    return min(1 << (wanted - 1).bit_length(), MAX_USER_BUCKETS)


def count_users(log: CheckedLog, column: str) -> tuple[int, str]:
    """Distinct values of the user id ``column`` over a checked log's files (reads that column only)
    and its id dtype (``"int64"`` or ``"string"``)."""
    dtype = "string" if is_string(log.schema.field(column).type) else "int64"
    arrow = pa.string() if dtype == "string" else pa.int64()
    chunks = [chunk.cast(arrow) for path in log.files for chunk in pq.read_table(path, columns=[column])[0].chunks]
    return pc.count_distinct(pa.chunked_array(chunks, arrow)).as_py(), dtype


def with_user_id_embedding(spec: FeatureSpec, train_log: CheckedLog, config: RocketConfig,
                           earlier: FeatureSpec | None = None) -> tuple[FeatureSpec, str | None]:
    """The run's spec with the user id also embedded as a user feature, or not
    (``config.model.user_id_embedding``), and one line saying what was decided and why.

    Args:
        spec: the run's spec; one that already lists the user id as a feature is kept as it is.
        train_log: the training log, through the log gate (only its user id column is read).
        config: the run's config.
        earlier: the spec of the run this one continues (a run dir it resumes, else a warm-start
            source): under ``auto`` the run keeps that run's choice and its feature (the same inputs).
    Returns:
        ``(spec, note)``; note None under ``no`` or when the spec already lists the user id.
    """
    name, setting = spec.user_id, config.model.user_id_embedding
    if setting == "no" or name in spec.scalar_id_columns:
        return spec, None
    if setting == "auto" and earlier is not None:
        kept = next((f for f in earlier.user_features if f.name == name), None)
        if kept is None:
            return spec, f"{name} not embedded: the run this one continues does not embed it"
        return _adding(spec, kept), f"{name} embedded: the run this one continues embeds it"
    users, dtype = count_users(train_log, name)
    rows_per_user = train_log.num_rows / users
    measured = f"{rows_per_user:.1f} training rows per user"
    if setting == "auto" and rows_per_user < ROWS_PER_USER_TO_EMBED:
        if name in crossed_users(config):  # the booster's wide part crosses it: for the booster alone
            # read by the crosses alone: as an input of the booster's MLP it overfits these few rows per user
            feature = IdFeature(name, dtype=dtype, buckets=user_id_buckets(users), booster_only=True, wide_only=True)
            return _adding(spec, feature), (f"{name} read by the booster's wide crosses alone ({feature.buckets} "
                                             f"hash buckets, {users} users): {measured} "
                                             f"(< {ROWS_PER_USER_TO_EMBED}), and {{model.booster_wide_crosses}} "
                                             "cross it")
        return spec, f"{name} not embedded: {measured} (< {ROWS_PER_USER_TO_EMBED})"
    feature = IdFeature(name, dtype=dtype, buckets=user_id_buckets(users))
    why = "{model.user_id_embedding} yes" if setting == "yes" else f"{measured} (>= {ROWS_PER_USER_TO_EMBED})"
    return _adding(spec, feature), f"{name} embedded ({feature.buckets} hash buckets, {users} users): {why}"


def crossed_users(config: RocketConfig) -> set:
    """The user-side features the booster's wide crosses name (none in base mode: no booster)."""
    if config.model.mode == "base":
        return set()
    return {user for user, _ in wide_crosses(config.model.booster_wide_crosses)}


def _adding(spec: FeatureSpec, feature: IdFeature) -> FeatureSpec:
    return dataclasses.replace(spec, user_features=(*spec.user_features, feature))
