"""Every booster option: eq. (1)'s gradients on the booster's variables, a run dir with it (restore, warm start),
and the light export, which holds none of the booster's variables."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from test_model import SMALL, SPEC_SLOT, build, build_slot, is_zero, labels, rows, slot_rows

from conftest import log_columns, write_log
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.export.rows import sample_rows
from rocket_ctr.export.verify import reference_probabilities
from rocket_ctr.export.writer import export_light
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.train.run_dir import restore_model
from rocket_ctr.train.trainer import Trainer

BOOSTER_ONLY_COLUMN = "booster-only-column"  # SPEC_SLOT's "slot" column, read by the booster alone
OPTIONS = {
    "din": {"booster_interest": "din"},
    "dot": {"booster_interest": "dot"},
    "din+dot": {"booster_interest": "din+dot"},
    "transformer": {"booster_interest": "transformer"},
    "transformer+din": {"booster_interest": "transformer+din"},
    "wide-no-bn-cross": {"booster_interest": "din+dot", "booster_cross": 2, "booster_batch_norm": False,
                         "booster_units": (32, 16)},
    "dropout": {"booster_dropout": 0.2},
    "dice": {"booster_activation": "dice"},
    "history": {"booster_history": 3},
    "residual": {"booster_interest": "din+dot", "booster_residual": True},
    "own-embeddings": {"booster_interest": "din+dot", "booster_embedding_dim": 6},
    "own-embeddings-l2": {"booster_embedding_dim": 6, "booster_embedding_l2": 1e-3},
    "wide": {"booster_wide": True, "booster_wide_crosses": "user_gender*cate_id"},
    BOOSTER_ONLY_COLUMN: {},
}
RUN = dict(epochs=1, batch_size=64, embedding_dim=4, attention_units=(8, 4), light_units=(8,), booster_units=(16, 8),
           validation_fraction=0.0, learning_rate=0.01, jit_compile=False)
LOG_SPEC = FeatureSpec(max_history=12, history_buckets=(4, 12)).with_buckets(item_id=512, cate_id=64,
                                                                               user_occupation=16)


@pytest.fixture(scope="module", params=list(OPTIONS))
def option(request):
    return request.param


def test_every_option_sets_model_config_fields_by_their_flat_names():
    default = RocketConfig().flat()
    for name, overrides in OPTIONS.items():
        changed = {k for k, v in RocketConfig(**overrides).flat().items() if v != default[k]}
        assert all(k.startswith("model.") for k in changed)
        # each named value that is not today's default changes exactly one field
        named = [n for n, v in overrides.items() if RocketConfig(**{n: v}).flat() != default]
        assert len(changed) == len(named)


# ----- gradients of eq. (1) on the booster's own variables --------------------------------------------------------
def booster_gradients(option, **extra):
    """(model, its booster variables v, ∂hint/∂v, ∂booster_ce/∂v): test_model's SMALL model with the option (λ = 1,
    no warm-up), one training-mode forward pass."""
    overrides = {**OPTIONS[option], **extra}
    model = build_slot(**overrides) if option == BOOSTER_ONLY_COLUMN else build(**overrides)
    x = slot_rows() if option == BOOSTER_ONLY_COLUMN else rows()
    variables = model.tower_variables("booster")
    with tf.GradientTape(persistent=True) as tape:
        terms = model.loss_terms(labels(), model(x, training=True))
    values = [v.value for v in variables]
    zero = tf.UnconnectedGradients.ZERO
    return (model, variables, tape.gradient(terms["hint"], values, unconnected_gradients=zero),
            tape.gradient(terms["booster_ce"], values, unconnected_gradients=zero))


def test_the_blocked_hint_never_reaches_the_booster_and_its_cross_entropy_trains_all_of_it(option):
    assert SMALL["hint_weight"] > 0 and not SMALL["hint_warmup"]  # λ applies from the first step
    model, variables, hint, booster_ce = booster_gradients(option)
    assert model.hint_config.gradient_block
    trainable = [v.trainable for v in variables]
    assert sum(trainable) > 2
    assert all(is_zero(g) for g in hint)
    untrained = [v.path for v, g, t in zip(variables, booster_ce, trainable) if t and is_zero(g)]
    assert not untrained
    # what is not trained is BatchNorm's moving statistics (the booster's, Dice's)
    assert all("batch_normalization" in v.path for v, t in zip(variables, trainable) if not t)
    if option == BOOSTER_ONLY_COLUMN:
        assert any(v is model.booster_columns.weights[0] for v in variables)
    # the hint is live: it trains the light tower
    x = slot_rows() if option == BOOSTER_ONLY_COLUMN else rows()
    with tf.GradientTape() as tape:
        term = model.loss_terms(labels(), model(x, training=True))["hint"]
    light = tape.gradient(term, [v.value for v in model.tower_variables("light")],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert float(term) > 0 and any(not is_zero(g) for g in light)


def test_without_the_gradient_block_the_hint_trains_every_booster_variable(option):
    _, variables, hint, _ = booster_gradients(option, gradient_block=False)
    assert [v.path for v, g in zip(variables, hint) if v.trainable and is_zero(g)] == []


# ----- a run dir with the option: restore, warm start, light export -----------------------------------------------
@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A few hundred rows with a booster-only "slot" column (ignored by the specs without it)."""
    columns = log_columns(320, max_len=12)
    return write_log(tmp_path_factory.mktemp("booster_options_log") / "log.parquet",
                     {**columns, "slot": [i % 6 for i in range(320)]})


@pytest.fixture(scope="module")
def run(option, log, tmp_path_factory):
    """(run dir, spec, config, the trained model) of one epoch with the option."""
    spec = dataclasses.replace(LOG_SPEC, item_features=SPEC_SLOT.item_features) \
        if option == BOOSTER_ONLY_COLUMN else LOG_SPEC
    config = RocketConfig(**{**RUN, **OPTIONS[option]})
    run_dir = tmp_path_factory.mktemp(f"run_{option.replace('+', '_')}")
    trainer = Trainer(run_dir, log, None, config, spec, verbose=0)
    trainer.fit()
    return run_dir, spec, config, trainer.model


def probabilities(model, log):
    sample = sample_rows(model.spec, log, n=48)
    return {tower: reference_probabilities(model, tower, sample) for tower in ("light", "booster")}


def test_a_run_dir_restores_the_booster_and_both_towers_predictions_exactly(option, run, log):
    run_dir, spec, config, trained = run
    restored, restored_spec, saved = restore_model(run_dir)
    assert restored_spec == spec and saved.replace(**OPTIONS[option]) == saved
    assert (restored.booster_columns is not None) == (option == BOOSTER_ONLY_COLUMN)
    again = Trainer(run_dir, log, None, config, spec, verbose=0)
    for model in (restored, again.model):
        booster = model.tower_variables("booster")
        assert [v.shape for v in booster] == [v.shape for v in trained.tower_variables("booster")]
        for a, b in zip(trained.tower_variables("booster"), booster):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the same weights through the same inference code: the very same float32 arithmetic
    expected = probabilities(trained, log)
    for model in (restored, again.model):
        got = probabilities(model, log)
        for tower in ("light", "booster"):
            np.testing.assert_array_equal(got[tower], expected[tower])


def test_a_warm_start_carries_every_booster_variable_over(option, run, log, tmp_path):
    run_dir, _, _, _ = run
    source, _, _ = restore_model(run_dir)
    trainer = Trainer(tmp_path / "day2", log, None, None, verbose=0, warm_start=run_dir)
    assert trainer.config.replace(**OPTIONS[option]) == trainer.config
    expected, carried = source.tower_variables("booster"), trainer.model.tower_variables("booster")
    assert len(carried) == len(expected) > 2
    for a, b in zip(expected, carried):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_light_export_holds_no_booster_variable(option, run, log, tmp_path):
    run_dir, spec, _, _ = run
    model, _, _ = restore_model(run_dir)
    result = export_light(model, spec, tmp_path / "export", jit_compile=False, data=log, sample_size=16,
                          warmup_candidates=8, progress=False)
    saved = {k: v for k, v in tf.train.list_variables(str(result.path / "variables" / "variables"))
             if k.startswith("tower_weights/")}
    assert saved and not any(part in k for k in saved for part in ("booster", "transformer", "cross", "slot"))
    light_path = [v for layer in model.serving_layers("light") for v in layer.weights]
    light_path += [model.intercepts["light"], model.slopes["light"], *model.knots["light"]]
    assert sum(np.prod(s) for s in saved.values()) == sum(np.prod(v.shape) for v in light_path)
    assert not {id(v) for v in light_path} & {id(v) for v in model.tower_variables("booster")}
