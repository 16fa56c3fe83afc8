"""rocket_ctr: Rocket Launching (light + booster towers) on a DIN CTR model, Keras 3 / TensorFlow.

The public API, imported lazily so that light entry points (e.g. the log generator) do not pay
for TensorFlow's start-up::

    from rocket_ctr import FeatureSpec, make_dataset, RocketConfig, RocketModel, Trainer
"""
import importlib

__version__ = "0.1.0"

_API = {
    "FeatureSpec": "spec", "IdFeature": "spec", "IdMapper": "id_mapping",
    "NumericFeature": "feature_types", "MultiHotFeature": "feature_types",
    "SequenceGroup": "feature_types", "SideFeature": "feature_types",
    "make_dataset": "data", "ClickLogReader": "data",
    "RocketConfig": "config", "RocketModel": "model", "LazyAdam": "optimizers",
    "Trainer": "trainer", "evaluate": "evaluation", "restore_model": "run_dir",
    "auc": "metrics", "gauc": "metrics", "logloss": "metrics", "StreamingEvaluator": "metrics",
    "pcoc": "calibration", "ece": "calibration", "relaimpr": "calibration",
    "corrected_probability": "calibration",
    "InputError": "errors",
    "export_light": "export",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f"rocket_ctr.{_API[name]}"), name)
    raise AttributeError(f"module 'rocket_ctr' has no attribute {name!r}")
