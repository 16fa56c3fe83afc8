"""RocketConfig: typed values from YAML/JSON/CLI, clear one-line errors, overrides."""
import pytest

from conftest import log_columns, write_log
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError, InputError
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
    with pytest.raises(InputError, match="unknown config key 'learnig_rate' \\(did you mean 'learning_rate'\\?\\)"):
        RocketConfig().replace(learnig_rate=1)


def test_unknown_keys_of_a_config_file_suggest_the_field_and_do_not_list_them_all(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("hint_wieght: 0.5\nzzz: 1\n")
    with pytest.raises(InputError) as caught:
        RocketConfig.from_file(path)
    message = str(caught.value)
    assert "'hint_wieght' (did you mean 'hint_weight'?)" in message and "'zzz'" in message
    assert "learning_rate" not in message  # no list of every field: --help has it


def test_cli_reports_a_bad_config_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: two\n")
    assert main(["train", "--train", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "epochs must be an integer" in err and "Traceback" not in err


# fields whose strings have a form of their own, or whose first other choice the defaults rule out (a shared
# attention cannot read the booster's own, wider tables)
STR_VALUES = {"model.booster_wide_crosses": "user_id*cate_id", "model.light_interest": "din"}


def test_every_field_has_a_generated_flag_that_reaches_it():
    import argparse

    from rocket_ctr.config.fields import fields_with_metadata
    from rocket_ctr.pipelines.train import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    for path, flag, field, default in fields_with_metadata(RocketConfig):
        if field.type == "bool":
            argv, expected = [f"--no-{flag[2:]}" if default else flag], not default
        elif field.metadata.get("choices"):
            expected = STR_VALUES.get(path) or next(c for c in field.metadata["choices"] if c != default)
            argv = [flag, expected]
        elif field.type == "tuple":
            argv, expected = [flag, "7,5"], (7, 5)
        elif field.type.startswith("float"):
            argv, expected = [flag, "0.25"], 0.25
        elif field.type == "str":
            expected = STR_VALUES.get(path, "tanh")
            argv = [flag, expected]
        else:
            argv, expected = [flag, "3"], 3
        config = config_from_args(parser.parse_args(argv))
        assert config.flat()[path] == expected, (flag, path)
        # nothing else moved
        assert {k: v for k, v in config.flat().items() if k != path} == \
            {k: v for k, v in RocketConfig().flat().items() if k != path}


def test_nested_and_flat_files_load_the_same_config(tmp_path):
    import json

    config = RocketConfig(mode="base", hint_weight=0.25, light_units=(64, 32), learning_rate=1e-3)
    nested, flat = tmp_path / "nested.json", tmp_path / "flat.yaml"
    nested.write_text(json.dumps(config.to_dict()))
    flat.write_text("mode: base\nhint_weight: 0.25\nlight_units: [64, 32]\nlearning_rate: 1.0e-3\n")
    assert RocketConfig.from_file(nested) == config == RocketConfig.from_file(flat)
    assert config.model.light.units == (64, 32) and config.hint.weight == 0.25


def test_errors_name_fields_for_python_and_flags_for_the_cli(tmp_path, capsys):
    from rocket_ctr.config.fields import flag_table
    from rocket_ctr.errors import FieldError

    with pytest.raises(FieldError) as caught:
        RocketConfig(booster_dropout=2.0, hint_weight=-1)
    assert "model.booster.dropout must be < 1.0" in str(caught.value)
    assert "hint.weight must be >= 0.0" in str(caught.value)
    assert "--booster-dropout must be < 1.0" in caught.value.render(flag_table(RocketConfig))
    assert main(["train", "--train", str(tmp_path), "--run-dir", str(tmp_path / "run"),
                 "--hint-weight", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--hint-weight must be >= 0.0, got -1.0" in err and "hint.weight" not in err


def test_a_saved_config_written_before_a_field_existed_keeps_what_that_run_built():
    saved = RocketConfig(light_interest="din").to_dict()
    assert RocketConfig.from_saved(saved).model.light_interest == "din"
    del saved["model"]["light_interest"], saved["model"]["booster_embedding_dim"]  # a run dir from before both
    assert RocketConfig.from_saved(saved).model.light_interest == "shared"
    assert RocketConfig.from_saved({"light_interest": "mean"}).model.light_interest == "mean"  # flat names
    assert RocketConfig.from_saved({"epochs": 2}).model.light_interest == "shared"
    # the booster trained the shared bottom only after a launch before --booster-bottom existed
    old = RocketConfig(hint_weight=1.0).to_dict()
    del old["hint"]["booster_bottom"]
    assert RocketConfig.from_saved(old).hint.booster_bottom == "after-launch"
    assert RocketConfig.from_saved(old).hint.weight == 1.0  # always saved: an old run keeps its λ
    assert RocketConfig().hint.booster_bottom == "from-start" and RocketConfig().hint.weight is None  # auto
    # the booster read DIN attention and had no cross stack before those fields existed
    old = RocketConfig().to_dict()
    del old["model"]["booster_interest"], old["model"]["booster_cross"]
    assert (RocketConfig.from_saved(old).model.booster_interest, RocketConfig.from_saved(old).model.booster_cross) \
        == ("din", 0)
    # nor tables of its own, a wide part or the wide part's rate of today
    del old["model"]["booster_embedding_dim"], old["model"]["booster_wide_crosses"]
    del old["training"]["booster_wide_rate"]
    before = RocketConfig.from_saved(old)
    assert (before.model.booster_embedding_dim, before.model.booster_wide_crosses, before.training.booster_wide_rate) \
        == (0, "", 10.0)


def test_validation_fraction_auto_resolves_per_split_kind():
    auto = RocketConfig().training
    assert auto.validation_fraction is None and auto.holds_out
    assert auto.validation_fractions(folds_in=True) == {"auto": 0.05, "last-event": 0.15, "user-tail": 0.05,
                                                        "time": 0.05, "users": 0.05}
    assert auto.validation_fractions(folds_in=False)["last-event"] == 0.05
    assert auto.validation_fractions(folds_in=False)["user-tail"] == 0.05
    given = RocketConfig(validation_fraction=0.1).training
    assert set(given.validation_fractions(folds_in=True).values()) == {0.1}
    assert not RocketConfig(validation_fraction=0.0).training.holds_out
    assert RocketConfig().replace({"training": {"validation_fraction": "auto"}}).training.validation_fraction is None


def test_validation_tail_events_only_with_a_split_that_takes_k():
    assert RocketConfig(validation_split="user-tail", validation_tail_events=3).training.validation_tail_events == 3
    assert RocketConfig(validation_tail_events=3).training.validation_split == "auto"  # auto: k if per-user
    assert RocketConfig(validation_split="last-event", validation_tail_events=1).training.validation_tail_events == 1
    assert RocketConfig().training.validation_tail_events is None
    for split in ("time", "users", "last-event"):
        with pytest.raises(FieldError, match=f"training.validation_tail_events 2 contradicts "
                                             f"training.validation_split {split}"):
            RocketConfig(validation_split=split, validation_tail_events=2)
    with pytest.raises(InputError, match="training.validation_tail_events must be >= 1"):
        RocketConfig(validation_tail_events=0)


@pytest.mark.parametrize("flags,says", [
    (["--validation-split", "time", "--validation-tail-events", "3"],
     "--validation-tail-events 3 contradicts --validation-split time"),
    (["--validation-split", "user-tail"], "--validation-split user-tail needs --validation-tail-events"),
    (["--validation-split", "time", "--eval", "EVAL"], "--validation-split time contradicts the eval log, a "
                                                       "last-event split")])
def test_cli_refuses_contradictory_validation_flags_in_one_line(flags, says, tmp_path, capsys):
    train, test = _leave_one_out_logs(tmp_path)
    flags = [test if flag == "EVAL" else flag for flag in flags]
    assert main(["train", "--train", train, "--run-dir", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _leave_one_out_logs(folder):
    """A training log and an eval log of each user's next (last) event, ts = the event's position."""
    def log(name, positions):
        rows = [(user, position, label) for user in range(30) for position in positions(user) for label in (1, 0)]
        columns = log_columns(len(rows), max_len=3)
        columns.update(user_id=[u for u, _, _ in rows], ts=[t for _, t, _ in rows], label=[y for _, _, y in rows])
        return write_log(folder / name, columns)

    return log("train.parquet", lambda u: range(1, 4 + u % 5)), log("test.parquet", lambda u: [4 + u % 5])
