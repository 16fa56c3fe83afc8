"""rocket_ctr: Rocket Launching (light + booster towers) on a DIN CTR model, Keras 3 / TensorFlow.

The public API, imported lazily so that light entry points (e.g. the log generator) do not pay
for TensorFlow's start-up::

    from rocket_ctr import FeatureSpec, make_dataset, RocketConfig, RocketModel, Trainer
"""
import importlib

__version__ = "0.1.0"

_API = {
    "FeatureSpec": "features.spec", "IdFeature": "features.id_feature", "IdMapper": "features.id_mapping",
    "NumericFeature": "features.types", "MultiHotFeature": "features.types",
    "SequenceGroup": "features.types", "SideFeature": "features.types",
    "make_dataset": "io.reader", "ClickLogReader": "io.reader",
    "RocketConfig": "config.schema", "RocketModel": "model.rocket", "LazyAdam": "train.optimizers",
    "Trainer": "train.trainer", "evaluate": "train.evaluation", "restore_model": "train.run_dir",
    "auc": "metrics.ranking", "gauc": "metrics.ranking", "logloss": "metrics.ranking",
    "StreamingEvaluator": "metrics.streaming",
    "pcoc": "calibration.measures", "ece": "calibration.measures", "relaimpr": "calibration.measures",
    "corrected_probability": "calibration.measures",
    "InputError": "errors",
    "export_light": "export.writer",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f"rocket_ctr.{_API[name]}"), name)
    raise AttributeError(f"module 'rocket_ctr' has no attribute {name!r}")
