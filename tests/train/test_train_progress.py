"""What training shows: progress lines on stderr without a terminal, the Keras bar ended with each
epoch on one, nothing when quiet."""
import io
import os
import re
import subprocess
import sys

import keras
import pytest

from rocket_ctr import progress
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.datagen.synthetic import generate
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.epoch_progress import finish_bar
from rocket_ctr.train.trainer import Trainer

SMALL = ["--mode", "base", "--epochs", "2", "--batch-size", "64", "--embedding-dim", "4", "--light-units", "8",
         "--validation-fraction", "0"]
LINE = re.compile(r"^epoch (\d)/2: [\d,]+/[\d,]+ rows, [\d,]+ rows/s, \d+:\d\d:\d\d left$")


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("log")
    generate(out, n_rows=3_000, n_users=200, n_items=100, n_cates=10, seed=1)
    return out


def test_without_a_terminal_training_prints_progress_lines_on_stderr(log, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", progress.SECONDS_VARIABLE: "0"}
    done = subprocess.run([sys.executable, "-m", "rocket_ctr.pipelines.cli", "train", "--train", str(log / "train"),
                           "--run-dir", str(tmp_path / "run"), *SMALL], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert {LINE.match(line).group(1) for line in lines if LINE.match(line)} == {"1", "2"}, done.stderr[-2000:]
    assert sum(bool(re.match(r"epoch \d/2: [\d,]+ rows, [\d,]+ rows/s, done in ", line)) for line in lines) == 2
    assert "\r" not in done.stdout + done.stderr
    # Keras' line at each epoch's end stays on stdout
    assert len(re.findall(r"^\s*(\d+)/\1 - ", done.stdout, re.M)) == 2, done.stdout


def test_quiet_training_prints_no_progress(log, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(progress.SECONDS_VARIABLE, "0")
    assert main(["train", "--train", str(log / "train"), "--run-dir", str(tmp_path / "run"), *SMALL, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "rows/s" not in err and not re.search(r"^epoch \d/2", out, re.M) and "\r" not in out


def test_the_bar_ends_with_an_epoch_shorter_than_its_estimate(click_log, tmp_path, monkeypatch):
    # histories of 0..60 steps fill every length bucket; each drops its last, partial batch (so do
    # validation users and downsampled negatives: the bar's estimate counts every row of the log)
    spec = FeatureSpec().with_buckets(item_id=500, cate_id=20)
    data = click_log(n=1_000, max_len=60)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    config = RocketConfig(mode="base", epochs=2, batch_size=64, embedding_dim=4, light_units=(8,),
                          validation_fraction=0.0, length_buckets=True)
    metrics = Trainer(tmp_path, data, None, config, spec, verbose=1).fit()
    monkeypatch.undo()
    steps = metrics["history"][0]["steps"]
    assert steps < 1_000 // 64, steps  # the bar's estimate
    text = terminal.getvalue()
    for epoch in ("epoch 1/2", "epoch 2/2"):
        after = text[text.index(epoch):]
        bar = after[:after.index("\n", len(epoch) + 1)]  # the bar's drawings up to its line's end
        assert f"{steps}/{steps}" in bar.split("\r")[-1], repr(bar[-300:])
    assert text.endswith("\n")
    assert "\r" not in text[text.rindex("epoch 2/2"):].split("\n", 2)[2]  # what follows starts on its own line


def test_finish_bar_sets_the_real_count_and_ends_the_line(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    bar = keras.utils.Progbar(35, verbose=1, stateful_metrics=["loss"])
    for step in range(1, 32):
        bar.update(step, [("loss", 0.5)])
    assert not terminal.getvalue().endswith("\n")
    finish_bar(bar, 31, [("loss", 0.5)])
    finish_bar(bar, 31, [("loss", 0.5)])  # a finished bar stays as it is
    monkeypatch.undo()
    assert terminal.getvalue().endswith("\n") and terminal.getvalue().count("\n") == 1
    assert "31/31" in terminal.getvalue().split("\r")[-1]
