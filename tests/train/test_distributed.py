"""Distributed training with real processes on 127.0.0.1: MultiWorkerMirroredStrategy through
``rocket-ctr launch-local``, a worker killed mid-run, and TF_CONFIG / sharding errors.

Every subprocess has a timeout, so a hung collective fails the test instead of hanging CI.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.datagen.synthetic import generate
from rocket_ctr.errors import InputError
from rocket_ctr.io.reader import ClickLogReader
from rocket_ctr.pipelines.cli import main
from rocket_ctr.pipelines.launch_local import cluster_spec
from rocket_ctr.train.distributed import read_tf_config, task_info

MODEL = ["--embedding-dim", "8", "--booster-units", "64,48,32,32,16,16,16", "--quiet"]
TIMEOUT = 300  # seconds for one launch-local job (a run takes ~30-60 s on 2 cores)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A log with a strong signal (stable GAUC) in 6 train files of 9,000 rows: two equal shards."""
    out = tmp_path_factory.mktemp("mwlog")
    generate(out, n_rows=60_000, n_users=1_000, n_items=400, n_cates=20, seed=5, base_ctr=0.2,
             pop_strength=1.5, recent_strength=1.5, noise_strength=0.2, rows_per_file=9_000,
             row_group_size=4_500)
    return out


class Launch:
    """``rocket-ctr launch-local`` in a subprocess, its output collected line by line."""

    def __init__(self, args: list[str]):
        command = [sys.executable, "-m", "rocket_ctr.pipelines.cli", "launch-local", *args]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")),
                                       daemon=True)
        self.thread.start()

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()  # the launcher stops its workers
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            pytest.fail(f"launch-local did not finish in {timeout} s:\n" + self.output[-3000:])
        self.thread.join(10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def pid_of(self, task: str) -> int | None:
        for line in self.lines:
            if f"started {task} (pid " in line:
                return int(line.split("(pid ")[1].split(")")[0])
        return None


def test_two_workers_on_one_row_group_match_single_process_training_with_the_same_global_batch(log, tmp_path):
    from rocket_ctr.train.trainer import Trainer
    # the whole train log as ONE file of ONE row group: the workers split it by row range
    train = tmp_path / "train.parquet"
    table = pq.read_table(sorted(str(p) for p in (log / "train").glob("*.parquet")))
    pq.write_table(table, train, row_group_size=table.num_rows)
    assert pq.ParquetFile(train).metadata.num_row_groups == 1
    # the plain joint training (no validation users, so no warm-up or early stopping): 3 full epochs each
    common = dict(epochs=3, embedding_dim=8, booster_units=(64, 48, 32, 32, 16, 16, 16), seed=1,
                  validation_fraction=0.0)
    single = Trainer(tmp_path / "single", train, log / "test",
                     RocketConfig(**common, batch_size=512), verbose=0).fit()
    run_dir = tmp_path / "mw"
    launch = Launch(["--workers", "2", "--max-restarts", "0", "--", "--train", str(train),
                     "--eval", str(log / "test"), "--run-dir", str(run_dir), "--epochs", "3",
                     "--batch-size", "256", "--seed", "1", "--validation-fraction", "0", *MODEL])
    assert launch.wait() == 0, launch.output[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["global_batch_size"] == 512
    # equal shards of 27,000 rows: the same steps per epoch as one process with the global batch
    assert [r["steps"] for r in metrics["history"]] == [27_000 // 256] * 3
    assert abs(metrics["light"]["gauc"] - single["light"]["gauc"]) <= 0.01, (metrics["light"], single["light"])
    assert metrics["light"]["gauc"] > 0.7
    # only the chief wrote outputs; the other worker's checkpoint copies were scratch
    assert (run_dir / "curves.png").exists() and list((run_dir / "tensorboard" / "train").iterdir())
    assert "[worker 1] mode rocket" not in launch.output and "[worker 0] mode rocket" in launch.output


def test_a_killed_worker_is_restarted_and_the_job_resumes_from_the_last_checkpoint(log, tmp_path):
    run_dir = tmp_path / "run"
    launch = Launch(["--workers", "2", "--max-restarts", "1", "--", "--train", str(log / "train"),
                     "--run-dir", str(run_dir), "--epochs", "2", "--batch-size", "256",
                     "--checkpoint-every", "25", "--validation-fraction", "0.1", *MODEL])
    deadline = time.time() + TIMEOUT
    while not list((run_dir / "checkpoints").glob("ckpt-*.index")) and time.time() < deadline:
        if launch.process.poll() is not None:
            pytest.fail("the job ended before a worker could be killed:\n" + launch.output[-3000:])
        time.sleep(0.2)
    pid = launch.pid_of("worker 1")
    assert pid, launch.output[-3000:]
    os.kill(pid, signal.SIGKILL)
    assert launch.wait() == 0, launch.output[-3000:]
    output = launch.output
    assert "worker 1 failed (killed by signal 9); restarting the group" in output, output[-3000:]
    resumed = [line for line in launch.lines if line.startswith("[worker 0] resuming from checkpoint")]
    assert resumed, output[-3000:]
    resumed_at = int(resumed[0].rsplit("global step ", 1)[1])
    steps_per_epoch = int(27_000 * 0.9) // 256
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["steps"] for r in metrics["history"]] == [steps_per_epoch] * 2
    final_step = int(open(run_dir / "checkpoints" / "checkpoint").read().split('"')[1].rsplit("-", 1)[1])
    # every step once: resumed, not restarted from 0 (+1: the best epoch's weights saved after the last
    # step, +2: the refitted intercepts, +4: the run marked finished)
    assert final_step == 2 * steps_per_epoch + 4
    assert "fold_in" not in metrics  # a time split: auto does not fold in
    # the chief fitted the intercepts on the validation rows and every worker saved them
    assert metrics["intercept"]["fitted_on"] == "validation rows" and metrics["intercept"]["rows"] > 0
    assert 25 <= resumed_at < final_step
    assert {"light", "booster"} <= set(metrics["validation"])


def test_tf_config_errors_are_one_line_input_errors():
    with pytest.raises(InputError, match="not valid JSON"):
        read_tf_config({"TF_CONFIG": "{cluster"})
    with pytest.raises(InputError, match="needs"):
        read_tf_config({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'})
    with pytest.raises(InputError, match="out of range"):
        read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster_spec(2), "task": {"type": "worker", "index": 2}})})
    with pytest.raises(InputError, match="not in the cluster"):
        read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster_spec(2), "task": {"type": "chief"}})})
    with pytest.raises(InputError, match="host:port"):
        read_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker"}}'})
    with pytest.raises(InputError, match="needs TF_CONFIG"):
        task_info(None, "multi-worker")
    with_ps = {"chief": ["127.0.0.1:1"], **cluster_spec(2), "ps": ["127.0.0.1:2"]}
    with pytest.raises(InputError, match="chief/worker tasks only"):
        task_info(read_tf_config({"TF_CONFIG": json.dumps({"cluster": with_ps,
                                                           "task": {"type": "chief"}})}), "multi-worker")
    assert read_tf_config({}) is None


def test_task_info_numbers_workers_with_and_without_a_chief():
    def info(cluster, task_type, index):
        return task_info({"cluster": cluster, "task": {"type": task_type, "index": index}}, "multi-worker")
    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert [info(workers, "worker", i).is_chief for i in range(3)] == [True, False, False]
    assert info(workers, "worker", 2).worker_index == 2 and info(workers, "worker", 2).num_workers == 3
    chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert info(chief, "chief", 0).is_chief and info(chief, "chief", 0).worker_index == 0
    assert not info(chief, "worker", 0).is_chief and info(chief, "worker", 1).worker_index == 2


def test_train_cli_refuses_multi_worker_without_tf_config(log, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = main(["train", "--train", str(log / "train"), "--run-dir", str(tmp_path), "--strategy", "multi-worker"])
    err = capsys.readouterr().err
    assert code == 2 and "needs TF_CONFIG" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("TF_CONFIG", "not json")
    assert main(["train", "--train", str(log / "train"), "--run-dir", str(tmp_path), "--strategy", "multi-worker"]) == 2
    assert "TF_CONFIG is not valid JSON" in capsys.readouterr().err


def test_one_row_group_feeds_two_workers_and_launch_errors(click_log, capsys):
    path = click_log(n=50)  # one file, one row group: rows 0-24 and 25-49
    assert [[u.name for u in ClickLogReader(path, num_shards=2, shard_index=i).units] for i in (0, 1)] == \
        [[f"{path} (rows 0-24)"], [f"{path} (rows 25-49)"]]
    assert main(["launch-local", "--workers", "1", "--", "--train", path, "--run-dir", "x"]) == 2
    assert "--workers must be >= 2" in capsys.readouterr().err
    assert main(["launch-local", "--workers", "2", "--", "--train", path, "--strategy", "default"]) == 2


def test_shards_are_equal_row_ranges_whatever_the_files(log):
    reader = ClickLogReader(log / "train")  # 6 files of 2 row groups each
    assert reader.shard_rows(4) == [13_500] * 4
    assert sorted(set(reader.shard_rows(13))) == [4_153, 4_154]
    assert sum(reader.shard_rows(8)) == reader.num_rows == 54_000
    assert sum(ClickLogReader(log / "train", num_shards=13, shard_index=i).num_rows for i in range(13)) == 54_000


def test_parameter_server_strategy_is_not_offered_and_the_library_refuses_it_with_the_reason(log, tmp_path, capsys):
    from rocket_ctr.errors import InputError
    from rocket_ctr.train.distributed import make_strategy

    with pytest.raises(SystemExit):
        main(["train", "--train", str(log / "train"), "--run-dir", str(tmp_path), "--strategy", "parameter-server"])
    assert "invalid choice: 'parameter-server'" in capsys.readouterr().err
    with pytest.raises(InputError, match="'ShardedVariable' object has no attribute 'handle'"):
        make_strategy("parameter-server")


def test_parameter_server_probe_shards_the_table_across_both_ps_and_shows_what_keras_3_lacks():
    """1 chief + 2 ps + 2 workers (real processes): the Keras 3 embedding really is split across both
    ps; the tape over Keras variables fails, the tape over their shards trains (benchmarks/ps_keras3_probe.py)."""
    probe = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "ps_keras3_probe.py")
    results = {}
    for mode in ("keras", "shards"):
        done = subprocess.run([sys.executable, probe, mode], capture_output=True, text=True, timeout=180,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results.values():
        assert result["embedding"] == "ShardedVariable"
        assert sorted(device.split("/")[3] for _, device in result["parts"]) == ["task:0", "task:1"]
        assert all(device.startswith("/job:ps/") for _, device in result["parts"])
        assert [shape for shape, _ in result["parts"]] == [[500, 8], [500, 8]]
    assert "no attribute 'handle'" in results["keras"]["error"]
    losses = results["shards"]["losses"]
    assert "error" not in results["shards"] and losses[-1] < losses[0]
