"""A truncated newest checkpoint: readers fall back to the newest intact one, or stop with one line."""
import json
import shutil

import pytest
import tensorflow as tf

from conftest import tiny_run
from rocket_ctr.errors import InputError
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.checkpoints import candidates, newest_intact


def truncate(path, keep: float = 0.5):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def two_checkpoints(folder):
    variable = tf.Variable(tf.range(1000, dtype=tf.float32))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(folder), max_to_keep=3)
    manager.save(checkpoint_number=1)
    variable.assign_add(tf.ones(1000))
    manager.save(checkpoint_number=2)
    return folder / "ckpt-1", folder / "ckpt-2"


def test_a_truncated_newest_checkpoint_falls_back_with_a_warning_naming_the_file(tmp_path):
    old, new = two_checkpoints(tmp_path)
    assert candidates(tmp_path) == [str(new), str(old)]
    data = next(tmp_path.glob("ckpt-2.data-*"))
    truncate(data)
    warnings = []
    assert newest_intact(tmp_path, warn=warnings.append) == str(old)
    assert len(warnings) == 1 and str(data) in warnings[0] and "truncated" in warnings[0]


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
    for prefix in two_checkpoints(tmp_path):
        truncate(next(tmp_path.glob(prefix.name + ".data-*")))
    with pytest.raises(InputError, match="no intact checkpoint"):
        newest_intact(tmp_path)
    assert newest_intact(tmp_path / "empty") is None


def test_an_unreadable_state_file_falls_back_to_the_index_files(tmp_path):
    old, new = two_checkpoints(tmp_path)
    (tmp_path / "checkpoint").write_text("model_checkpoint_path: \"ckpt-")  # cut mid-write
    assert candidates(tmp_path) == [str(new), str(old)]


def test_evaluate_and_training_resume_skip_a_truncated_newest_checkpoint(tmp_path_factory, tmp_path, capsys):
    source, log = tiny_run(tmp_path_factory)
    run = tmp_path / "run"
    shutil.copytree(source, run)
    folder = run / "checkpoints"
    intact = tf.train.latest_checkpoint(str(folder))
    step = int(intact.rsplit("-", 1)[1])
    for path in folder.glob(f"ckpt-{step}.*"):  # a newer copy of it, then cut short (a full disk)
        shutil.copy(path, folder / path.name.replace(f"ckpt-{step}", f"ckpt-{step + 1}"))
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{step + 1}"\n'
                                       f'all_model_checkpoint_paths: "ckpt-{step}"\n'
                                       f'all_model_checkpoint_paths: "ckpt-{step + 1}"\n')
    bad = next(folder.glob(f"ckpt-{step + 1}.data-*"))
    truncate(bad)

    assert main(["evaluate", "--run-dir", str(run), "--data", str(log / "test")]) == 0
    out, err = capsys.readouterr()
    assert '"light"' in out and str(bad) in err and f"using {intact}" in err

    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.train.run_dir import CONFIG_FILE
    from rocket_ctr.train.trainer import Trainer
    config = RocketConfig().replace(json.loads((run / CONFIG_FILE).read_text()))
    trainer = Trainer(run, log / "train", None, config, verbose=0)  # resumes: builds and restores, no fit
    saved = tf.train.load_checkpoint(intact).get_tensor("progress/.ATTRIBUTES/VARIABLE_VALUE")
    assert list(trainer.progress.numpy()) == list(saved)

    truncate(next(folder.glob(f"ckpt-{step}.data-*")))
    assert main(["export", "--run-dir", str(run), "--export-base", str(tmp_path / "base")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no intact checkpoint" in err[0], err
    assert not (tmp_path / "base").exists()
