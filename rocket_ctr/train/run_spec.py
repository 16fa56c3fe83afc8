"""The FeatureSpec a training run uses, decided before TensorFlow starts (``launch-local`` checks
the workers' logs with it in its own process)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.log_gate import find_feature_spec

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
