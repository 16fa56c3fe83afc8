"""The run folder's helpers: strict JSON."""
import json

import numpy as np


def test_metrics_json_is_strict_json_with_nan_as_null():
    from rocket_ctr.train.run_dir import to_json
    text = to_json({"light": {"gauc": float("nan"), "auc": np.float32(0.75)}, "n": np.int64(3)})
    assert json.loads(text) == {"light": {"gauc": None, "auc": 0.75}, "n": 3}
