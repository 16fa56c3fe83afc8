"""``rocket-ctr inspect --fit-spec``: quantile boundaries and mean/std of numeric columns."""
import json

import numpy as np

from conftest import log_columns
from rocket_ctr.features.fit import fit_numeric, quantile_boundaries
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines.cli import main

SPEC = FeatureSpec(numeric_features=[{"name": "price", "num_buckets": 4, "normalize": True},
                                     {"name": "age", "side": "user", "boundaries": [10.0], "normalize": False}])


def _log(click_log, n=200, name="log.parquet"):
    rng = np.random.default_rng(0)
    columns = log_columns(n, max_len=4)
    columns["price"] = [None if i % 9 == 0 else float(v) for i, v in enumerate(rng.lognormal(1, 1, n))]
    columns["age"] = [float(i % 60) for i in range(n)]
    return click_log(name, columns), columns


def test_fit_numeric_gives_quantiles_and_moments_of_the_finite_values(click_log):
    path, columns = _log(click_log)
    fitted, stats = fit_numeric([path], SPEC)
    price = np.array([v for v in columns["price"] if v is not None])
    f = fitted.numeric_features[0]
    np.testing.assert_allclose(f.boundaries, np.quantile(price, [0.25, 0.5, 0.75]))
    np.testing.assert_allclose([f.mean, f.std], [price.mean(), price.std()], rtol=1e-9)
    assert stats["price"]["count"] == len(price)
    assert fitted.numeric_features[1] == SPEC.numeric_features[1]  # nothing asked of it: unchanged
    assert quantile_boundaries(np.array([1.0] * 10 + [2.0]), 4) == (1.0,)  # ties collapse


def test_cli_fit_spec_writes_a_spec_that_trains(click_log, tmp_path, capsys):
    path, _ = _log(click_log)
    spec_file, out = tmp_path / "spec.json", tmp_path / "fitted.json"
    SPEC.save(spec_file)
    assert main(["inspect", path, "--spec", str(spec_file), "--fit-spec", str(out)]) == 0
    assert "fitted spec" in capsys.readouterr().out
    fitted = FeatureSpec.load(out)
    assert len(fitted.numeric_features[0].boundaries) == 3 and fitted.numeric_features[0].fitted


def test_cli_fit_spec_refuses_an_all_nan_column_and_writes_nothing(click_log, tmp_path, capsys):
    columns = log_columns(20, max_len=4)
    path = click_log("nan.parquet", {**columns, "price": [float("nan")] * 20, "age": [1.0] * 20})
    spec_file, out = tmp_path / "spec.json", tmp_path / "fitted.json"
    SPEC.save(spec_file)
    out.write_text('{"earlier": true}')
    capsys.readouterr()
    assert main(["inspect", path, "--spec", str(spec_file), "--fit-spec", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "'price'" in lines[0] and "no number" in lines[0]
    assert json.loads(out.read_text()) == {"earlier": True}
