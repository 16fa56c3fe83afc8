"""Run dirs and exports written by release 0.1 (tests/fixtures/v0_1, made by write_fixtures.py)
resume, restore and serve with today's code exactly as they were written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1"
# the config the fixtures were trained with (write_fixtures.TINY)
TINY = dict(epochs=2, batch_size=64, learning_rate=5e-3, embedding_dim=4, light_units=(8, 4),
            booster_units=(16, 8), jit_compile=False, checkpoint_every=10_000,
            # the booster and the hint of that release's defaults
            booster_interest="din", booster_cross=0, booster_batch_norm=True, booster_bottom="from-start",
            booster_embedding_dim=0, booster_wide_crosses="", booster_wide_rate=10.0, hint_weight=0.0)
LOG = FIXTURES / "log"


@pytest.fixture
def copy_of(tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(FIXTURES / name, tmp_path / name))
    return copy


def test_a_run_interrupted_between_epochs_resumes_at_its_second_epoch(copy_of, capsys):
    from rocket_ctr import RocketConfig, Trainer

    run_dir = copy_of("run_interrupted")
    first_epoch = json.loads((run_dir / "history.json").read_text())
    trainer = Trainer(run_dir, LOG / "train", LOG / "test", RocketConfig(**TINY), verbose=1)
    assert trainer.progress.numpy().tolist()[:2] == [1, 0]
    metrics = trainer.fit()
    assert "resuming from checkpoint: epoch 2" in capsys.readouterr().out
    history = json.loads((run_dir / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2]
    assert history[0] == first_epoch[0]  # epoch 1 is kept as written, not trained again
    assert metrics["epochs"] == 2 and {"light", "booster"} <= set(metrics)


def test_a_finished_run_restores_and_reproduces_its_metrics(copy_of):
    from rocket_ctr import RocketConfig, Trainer, evaluate, restore_model

    run_dir = copy_of("run_finished")
    saved = json.loads((run_dir / "metrics.json").read_text())
    model, spec, config = restore_model(run_dir)
    # a field the fixture's config.json predates reads as what the run built (config.compat)
    assert config == RocketConfig(**{**TINY, "epochs": 1, "user_id_embedding": "no", "fold_in_calibration": "before"})
    restored = evaluate(model, LOG / "test", spec)
    for tower in ("light", "booster"):
        # float32 forward passes summed in another order (another CPU) move a logit by ~1e-6
        # relative: log loss by about as much; AUC only where two rows' scores are that close
        assert restored[tower]["logloss"] == pytest.approx(saved[tower]["logloss"], abs=1e-5)
        assert restored[tower]["auc"] == pytest.approx(saved[tower]["auc"], abs=1e-3)
    assert Trainer(run_dir, LOG / "train", LOG / "test", config, verbose=0).fit() == saved


def test_an_export_loads_and_serves_what_it_served_when_written():
    import numpy as np
    import tensorflow as tf

    from rocket_ctr.scoring.scorer import load_saved_model

    loaded, info = load_saved_model(FIXTURES / "export" / "1")
    assert info["tower"] == "light"
    expected = json.loads((FIXTURES / "export" / "expected.json").read_text())
    signature = loaded.signatures["serving_default"]
    inputs = {name: tf.constant(expected["request"][name], dtype=tensor.dtype)
              for name, tensor in signature.structured_input_signature[1].items()}
    served = signature(**inputs)["probabilities"].numpy()
    # float32 probabilities near 0.2 from an 8-wide tower: summation order moves them by < 1e-6
    np.testing.assert_allclose(served, expected["probabilities"], atol=1e-5)
