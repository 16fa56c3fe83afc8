"""Light-tower export: variables, equality with the in-memory tower, signatures, atomicity, versions, warmup."""
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from conftest import FLOAT32_PROBABILITY_ATOL, TINY, tiny_run
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import InputError
from rocket_ctr.export import writer as export_module
from rocket_ctr.export.rows import one_user_request, sample_rows
from rocket_ctr.export.serving_module import ServingModule
from rocket_ctr.export.verify import VerificationError, reference_probabilities
from rocket_ctr.export.writer import WARMUP_FILE, export_light, list_versions, read_export_info
from rocket_ctr.features.signatures import SCORE_ROWS, SERVING_DEFAULT, example_rows
from rocket_ctr.features.spec import HIST_LEN
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.run_dir import restore_model
from rocket_ctr.train.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run, log = tiny_run(tmp_path_factory)
    model, spec, _ = restore_model(run)
    return run, log, model, spec


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """{False: no-XLA export, True: XLA export} of the light tower."""
    _, log, model, spec = trained
    base = tmp_path_factory.mktemp("exports")
    return {xla: export_light(model, spec, base / ("xla" if xla else "plain"), jit_compile=xla, data=log / "test")
            for xla in (False, True)}


def call(loaded, signature, inputs):
    return loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})["probabilities"].numpy()


def saved_variables(path):
    return dict(tf.train.list_variables(str(path / "variables" / "variables")))


def _calibration(model) -> list:
    """The light tower's fitted intercept, slope and isotonic knots (all default on)."""
    return [model.intercepts["light"], model.slopes["light"], *model.knots["light"]]


def test_savedmodel_holds_only_the_light_tower_and_its_bottom(trained, exported):
    _, _, model, _ = trained
    variables = {k: v for k, v in saved_variables(exported[False].path).items() if k.startswith("tower_weights/")}
    assert variables and not any("booster" in k for k in variables)
    parts = ("light_tower", "shared_bottom", "din_attention", "light_dot", "light_intercept", "light_slope",
             "light_knots")
    assert all(any(part in k for part in parts) for k in variables)
    light = model.tower_variables("light") + model.shared_variables() + _calibration(model)
    assert sum(np.prod(s) for s in variables.values()) == sum(np.prod(v.shape) for v in light)
    assert model.tower_variables("booster")  # the run has a booster; it just is not exported


@pytest.mark.parametrize("light,xla,booster", [("din", False, "din"), ("mean", False, "din"), ("dot", True, "din"),
                                               ("dot", False, "transformer+din")])
def test_own_light_extractors_export_their_path_alone(trained, tmp_path, light, xla, booster):
    """din/dot/mean light extractors: the SavedModel holds the embeddings, the light extractor and
    tower, no booster variable (not even the booster's attention or transformer), and is verified against memory."""
    _, _, _, spec = trained
    keras.utils.set_random_seed(0)
    model = RocketModel(spec, RocketConfig(**TINY, light_interest=light, light_history=3, booster_interest=booster))
    model(example_rows(spec), training=False)
    result = export_light(model, spec, tmp_path / light, jit_compile=xla, sample_size=24, warmup_candidates=64)
    variables = {k: v for k, v in saved_variables(result.path).items() if k.startswith("tower_weights/")}
    assert variables and not any("booster" in k or "transformer" in k or "encoder" in k for k in variables)
    light_path = [v for layer in model.serving_layers("light") for v in layer.weights] + _calibration(model)
    assert sum(np.prod(s) for s in variables.values()) == sum(np.prod(v.shape) for v in light_path)
    assert any(f"light_{light}" in k for k in variables) == (light != "mean")   # mean has no weights
    assert result.max_abs_diff <= 1e-5


@pytest.mark.parametrize("xla", [False, True])
def test_outputs_match_the_in_memory_tower_including_unseen_ids_and_empty_histories(trained, exported, xla):
    _, log, model, spec = trained
    loaded = tf.saved_model.load(str(exported[xla].path))
    rows = sample_rows(spec, log / "test", n=64)
    assert (rows[HIST_LEN] == 0).any() and (rows[HIST_LEN] > spec.max_history).any()
    assert rows["item_id"].max() > 2**60  # unseen ids among the edge rows
    served = call(loaded, SCORE_ROWS, rows)
    np.testing.assert_allclose(served, reference_probabilities(model, "light", rows), atol=FLOAT32_PROBABILITY_ATOL)
    assert exported[xla].max_abs_diff <= 1e-5 and exported[xla].jit_compile is xla


def test_serving_default_equals_score_rows_on_the_same_data(trained, exported):
    _, log, _, spec = trained
    loaded = tf.saved_model.load(str(exported[False].path))
    rows = sample_rows(spec, log / "test", n=40)
    candidates = np.arange(len(rows[HIST_LEN]))
    for user in (0, 3, len(candidates) - 1):
        request = one_user_request(spec, rows, user, candidates)
        tiled = {c: np.repeat(rows[c][user:user + 1], len(candidates), axis=0)
                 for c in (*spec.history_columns, HIST_LEN, "user_gender", "user_occupation")}
        tiled.update({c: rows[c] for c in ("item_id", "cate_id")})
        np.testing.assert_allclose(call(loaded, SERVING_DEFAULT, request), call(loaded, SCORE_ROWS, tiled),
                                   atol=FLOAT32_PROBABILITY_ATOL)


def test_variable_n_and_l_without_retracing(trained):
    _, log, model, spec = trained
    module = ServingModule(model, jit_compile=False)
    rows = sample_rows(spec, log / "test", n=64)
    for n, steps in ((1, 0), (7, 3), (64, 30), (20, 55)):
        request = one_user_request(spec, rows, 0, np.arange(n))
        request.update({c: rows[c][:1, :steps] for c in spec.history_columns})
        out = module.serving_default({k: tf.constant(v) for k, v in request.items()})["probabilities"]
        assert out.shape == (n,)
    assert module.serving_default.experimental_get_tracing_count() == 1


def test_long_history_keeps_its_newest_steps(trained, exported):
    _, _, _, spec = trained
    loaded = tf.saved_model.load(str(exported[True].path))
    rng = np.random.default_rng(1)
    history = {c: rng.integers(0, 1000, (1, spec.max_history + 30)) for c in spec.history_columns}
    base = {"user_gender": np.array([b"F"], object), "user_occupation": np.array([b"x"], object),
            "item_id": rng.integers(0, 1000, 9), "cate_id": rng.integers(0, 20, 9)}
    long = call(loaded, SERVING_DEFAULT, {**base, **history})
    newest = call(loaded, SERVING_DEFAULT, {**base, **{c: h[:, -spec.max_history:] for c, h in history.items()}})
    np.testing.assert_allclose(long, newest, atol=1e-6)


def test_failed_verification_leaves_the_base_unchanged(trained, exported, tmp_path, monkeypatch):
    _, _, model, spec = trained
    base = tmp_path / "base"
    shutil.copytree(exported[False].path, base / "1")
    before = sorted(os.listdir(base))

    def fail(*args, **kwargs):
        raise VerificationError("forced mismatch")

    monkeypatch.setattr(export_module, "verify_export", fail)
    with pytest.raises(VerificationError, match="forced mismatch"):
        export_light(model, spec, base, jit_compile=False)
    assert sorted(os.listdir(base)) == before  # no version 2, no .tmp-* folder
    with pytest.raises(VerificationError):
        export_light(model, spec, tmp_path / "new_base", jit_compile=False)
    assert not (tmp_path / "new_base").exists()


def test_version_numbering(trained, tmp_path):
    _, _, model, spec = trained
    base = tmp_path / "base"
    assert export_light(model, spec, base, jit_compile=False, sample_size=16).version == 1
    assert export_light(model, spec, base, 7, jit_compile=False, sample_size=16).version == 7
    assert export_light(model, spec, base, jit_compile=False, sample_size=16).version == 8
    assert list_versions(base) == [1, 7, 8]
    with pytest.raises(InputError, match="already exists"):
        export_light(model, spec, base, 7, jit_compile=False)


def test_warmup_file_holds_prediction_logs(exported):
    path = exported[True].path / "assets.extra" / WARMUP_FILE
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert 0 < len(records) <= 1000 and len(records) == exported[True].warmup_records
    loaded = tf.saved_model.load(str(exported[True].path))
    for record in records:
        request = record.predict_log.request
        signature = loaded.signatures[request.model_spec.signature_name]
        assert set(request.inputs) == set(signature.structured_input_signature[1])
    assert {r.predict_log.request.model_spec.signature_name for r in records} == {SERVING_DEFAULT, SCORE_ROWS}


def test_booster_export_is_the_booster(trained, tmp_path):
    _, log, model, spec = trained
    result = export_light(model, spec, tmp_path / "booster", tower="booster", jit_compile=False, data=log / "test")
    names = [k for k in saved_variables(result.path) if k.startswith("tower_weights/")]
    assert any("booster_tower" in k for k in names) and not any("light_tower" in k for k in names)
    rows = sample_rows(spec, log / "test", n=16)
    np.testing.assert_allclose(call(tf.saved_model.load(str(result.path)), SCORE_ROWS, rows),
                               reference_probabilities(model, "booster", rows), atol=FLOAT32_PROBABILITY_ATOL)


def test_cli_export_and_its_errors(trained, tmp_path, capsys):
    run, log, _, _ = trained
    base = tmp_path / "base"
    assert main(["export", "--run-dir", str(run), "--export-base", str(base), "--no-xla",
                 "--data", str(log / "test")]) == 0
    out = capsys.readouterr().out
    assert str(base / "1") in out and "verified" in out
    empty_run = tmp_path / "empty_run"
    shutil.copytree(run, empty_run, ignore=shutil.ignore_patterns("checkpoints"))
    assert main(["export", "--run-dir", str(empty_run), "--export-base", str(base)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["export", "--run-dir", str(run), "--export-base", str(a_file)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["export", "--run-dir", str(run), "--export-base", str(a_file / "sub"), "--no-xla"]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "Traceback" not in err


def test_score_rows_refuses_hist_len_outside_the_history_it_comes_with(trained, exported):
    _, log, _, spec = trained
    loaded = tf.saved_model.load(str(exported[False].path))
    rows = sample_rows(spec, log / "test", n=4)
    width = rows[spec.history_columns[0]].shape[1]
    for bad in (width + 1, -1):
        broken = {**rows, HIST_LEN: np.array([bad] + list(rows[HIST_LEN][1:]), np.int32)}
        with pytest.raises(tf.errors.InvalidArgumentError, match="hist_len"):
            call(loaded, SCORE_ROWS, broken)


def test_importing_export_does_not_import_training():
    """Export sits beside training: no module of rocket_ctr.train (loop, optimizers, curves...), and no
    matplotlib module beyond the ones Keras itself loads when matplotlib is installed."""
    code = ("import sys, tensorflow, keras; "
            "keras_plots = {m for m in sys.modules if m.split('.')[0] == 'matplotlib'}; "
            "import rocket_ctr.export.writer; "
            "print(sorted({m for m in sys.modules if m.split('.')[0] == 'matplotlib'} - keras_plots) + sorted("
            "m for m in sys.modules if m.startswith('rocket_ctr.train')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_booster_only_columns_are_never_asked_of_the_light_export(click_log, tmp_path, capsys):
    """Trained with a booster-only column, the light export's signatures and metadata leave it out and
    serving, predicting from the export and p_light from the run dir run on logs without it."""
    import json

    import pyarrow.parquet as pq

    from conftest import log_columns
    from rocket_ctr.export.writer import read_export_info
    from rocket_ctr.features.id_feature import IdFeature
    from rocket_ctr.features.spec import FeatureSpec

    spec = FeatureSpec(item_features=(IdFeature("slot", buckets=5, booster_only=True),)).with_buckets(
        item_id=500, cate_id=20)
    columns = log_columns(200, max_len=12)
    plain = click_log("plain.parquet", columns)
    with_slot = click_log("slot.parquet", {**columns, "slot": [i % 5 for i in range(200)]})
    config = RocketConfig(epochs=1, batch_size=32, embedding_dim=4, attention_units=(8, 4), light_units=(8,),
                          booster_units=(16, 8), booster_cross=1, validation_fraction=0.0)
    run = tmp_path / "run"
    Trainer(run, with_slot, None, config, spec, verbose=0).fit()
    model, restored, _ = restore_model(run)
    assert restored == spec and model.booster_columns is not None
    result = export_light(model, restored, tmp_path / "base", jit_compile=False, data=plain)
    loaded = tf.saved_model.load(str(result.path))
    for name in (SERVING_DEFAULT, SCORE_ROWS):
        inputs = loaded.signatures[name].structured_input_signature[1]
        assert "slot" not in inputs and "item_id" in inputs
    info = read_export_info(result.path)
    assert "slot" not in json.dumps(info["signatures"]) and "slot" not in json.dumps(info["feature_spec"])
    assert not any("booster" in k for k in saved_variables(result.path))
    rows = sample_rows(spec.served(), plain, n=8)
    assert "slot" not in rows
    np.testing.assert_allclose(call(loaded, SCORE_ROWS, rows), reference_probabilities(model, "light", rows),
                               atol=FLOAT32_PROBABILITY_ATOL)
    request = one_user_request(spec.served(), rows, 0, np.arange(8))
    assert call(loaded, SERVING_DEFAULT, request).shape == (8,)
    # predict: from the export and p_light from the run dir without the column; p_booster needs it
    assert main(["predict", "--no-progress", "--model", str(tmp_path / "base"), "--data", plain,
                 "--out", str(tmp_path / "p_export")]) == 0
    assert main(["predict", "--no-progress", "--run-dir", str(run), "--no-booster", "--no-xla", "--data", plain,
                 "--out", str(tmp_path / "p_light")]) == 0
    np.testing.assert_allclose(pq.read_table(tmp_path / "p_export")["p_light"].to_numpy(),
                               pq.read_table(tmp_path / "p_light")["p_light"].to_numpy(), atol=FLOAT32_PROBABILITY_ATOL)
    assert main(["predict", "--no-progress", "--run-dir", str(run), "--no-xla", "--data", with_slot,
                 "--out", str(tmp_path / "p_both")]) == 0
    assert pq.read_table(tmp_path / "p_both").column_names[-2:] == ["p_light", "p_booster"]
    capsys.readouterr()
    assert main(["predict", "--no-progress", "--run-dir", str(run), "--no-xla", "--data", plain,
                 "--out", str(tmp_path / "p_missing")]) == 2
    assert "slot" in capsys.readouterr().err


def test_export_applies_the_fitted_slope_and_intercept(trained, exported):
    """The export serves σ(f(a·logit + log r + b)): model.probabilities, without and with XLA."""
    from rocket_ctr.export.verify import _truncated
    from rocket_ctr.features.id_mapping import IdMapper

    _, log, model, spec = trained
    info = read_export_info(exported[False].path)
    assert info["slope"] == model.slope_values()["light"] != 1.0
    assert info["intercept"] == model.intercept_values()["light"]
    assert info["knots"] == model.knot_values()["light"] and info["knots"]["x"] != info["knots"]["y"]  # fitted
    rows = sample_rows(spec, log / "test", n=64)
    truncated = _truncated(spec, rows)
    mapped = IdMapper(spec)({c: tf.constant(v) for c, v in truncated.items() if c != HIST_LEN})
    mapped[HIST_LEN] = tf.constant(truncated[HIST_LEN])
    expected = model.probabilities({"light": model.tower_logit("light", mapped)})["light"].numpy()
    for xla in (False, True):
        np.testing.assert_allclose(call(tf.saved_model.load(str(exported[xla].path)), SCORE_ROWS, rows), expected,
                                   atol=FLOAT32_PROBABILITY_ATOL)
