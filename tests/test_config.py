"""RocketConfig: typed values from YAML/JSON/CLI, clear one-line errors, overrides."""
import pytest

from rocket_ctr.config import RocketConfig
from rocket_ctr.errors import InputError
from rocket_ctr.pipelines.cli import main


def test_values_are_coerced_to_their_field_types():
    config = RocketConfig(learning_rate="1e-3", light_units=64, booster_units="32, 16", epochs="3")
    assert config.training.learning_rate == 0.001 and config.training.epochs == 3
    assert config.model.light.units == (64,) and config.model.booster.units == (32, 16)


@pytest.mark.parametrize("bad,named", [
    (dict(epochs="two"), "training.epochs"), (dict(epochs=2.5), "training.epochs"),
    (dict(light_units="abc"), "model.light.units"), (dict(light_units=-5), "model.light.units"),
    (dict(share="yes"), "model.share"), (dict(mode="fast"), "model.mode"), (dict(hint="l1"), "hint.loss"),
    (dict(booster_epochs=0), "training.booster_epochs"), (dict(booster_dropout=1.0), "model.booster.dropout"),
    (dict(learning_rate=0), "training.learning_rate")])
def test_bad_values_raise_input_error_naming_the_field(bad, named):
    with pytest.raises(InputError, match=named):
        RocketConfig(**bad)


def test_yaml_file_with_cli_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-3\nhint: kd\nshare: false\nbooster_units: [64, 32]\n")
    config = RocketConfig.from_file(path).replace(hint="mse", share=None)
    assert (config.training.learning_rate, config.hint.loss, config.model.share, config.model.booster.units) == \
        (0.001, "mse", False, (64, 32))
    with pytest.raises(InputError, match="unknown config keys"):
        RocketConfig().replace(learnig_rate=1)


def test_cli_reports_a_bad_config_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: two\n")
    assert main(["train", "--train", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "epochs must be an integer" in err and "Traceback" not in err
