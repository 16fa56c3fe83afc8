"""``rocket-ctr launch-local``: a training cluster of local processes on 127.0.0.1, for trying
distributed training on one machine and for tests.

Each process gets free ports and its own ``TF_CONFIG`` (as a cluster manager would set it) and
runs ``rocket-ctr train <train args> --strategy multi-worker``. Output lines are prefixed with
the task's name. When a process fails (killed, crashed), the others are stopped and the whole
group is started again, at most ``--max-restarts`` times: training resumes from the chief's last
checkpoint in the run dir. Bad input (exit code 2) is not retried.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from rocket_ctr.errors import InputError


def add_parser(subparsers) -> None:
    """Registers the ``launch-local`` sub-command."""
    parser = subparsers.add_parser(
        "launch-local", help="run `train` as a local multi-worker cluster",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="rocket-ctr launch-local --workers N [--max-restarts K] -- --train PATH --run-dir DIR ...")
    parser.add_argument("--workers", type=int, required=True, help="worker processes (data-parallel replicas)")
    parser.add_argument("--max-restarts", type=int, default=2,
                        help="times the group is restarted after a failed process (default: %(default)s)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: the arguments of `rocket-ctr train`")
    parser.set_defaults(func=run)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_spec(workers: int) -> dict:
    """``{"worker": [...]}``: ``workers`` multi-worker tasks on free local ports."""
    return {"worker": [f"127.0.0.1:{port}" for port in free_ports(workers)]}


def _die_with_parent():
    """Child side of Popen: get SIGKILL when the launcher dies, so no orphan keeps training."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pump(stream, prefix: str):
    for line in iter(stream.readline, b""):
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


class Group:
    """One attempt: the cluster's processes, started together and stopped together."""

    def __init__(self, train_args: list[str], workers: int, attempt: int):
        self.cluster = cluster_spec(workers)
        command = [sys.executable, "-m", "rocket_ctr.pipelines.cli", "train", *train_args,
                   "--strategy", "multi-worker"]
        self.processes, self.threads = {}, []
        for task_type, addresses in self.cluster.items():
            for index in range(len(addresses)):
                name = f"{task_type} {index}"
                tf_config = {"cluster": self.cluster, "task": {"type": task_type, "index": index}}
                env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "PYTHONUNBUFFERED": "1"}
                env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
                self.processes[name] = process
                print(f"launch-local: attempt {attempt}: started {name} (pid {process.pid}) at "
                      f"{addresses[index]}", flush=True)
                thread = threading.Thread(target=_pump, args=(process.stdout, f"[{name}] "), daemon=True)
                thread.start()
                self.threads.append(thread)

    def wait(self) -> tuple[int, str | None]:
        """Blocks until the job ends: (0, None) when every worker succeeded, else (code, failed task)."""
        while True:
            for name, process in self.processes.items():
                code = process.poll()
                if code is not None and code != 0:
                    return code, name
            if all(process.poll() == 0 for process in self.processes.values()):
                return 0, None
            time.sleep(0.2)

    def stop(self, grace: float = 10.0):
        """SIGTERM to every live process, SIGKILL after ``grace`` seconds."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.time() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for thread in self.threads:
            thread.join(timeout=5)


def launch(train_args: list[str], workers: int, max_restarts: int = 2) -> int:
    """Runs ``rocket-ctr train`` as a local cluster until it finishes or fails too often.

    Args:
        train_args: arguments of ``rocket-ctr train`` (without ``--strategy``).
        workers: worker processes (data-parallel replicas; worker 0 is the chief).
        max_restarts: group restarts allowed after a failed process.
    Returns:
        0 on success, 2 for bad input, else the failed process's exit code.
    """
    if workers < 1 or max_restarts < 0:
        raise InputError("--workers must be >= 1, --max-restarts >= 0")
    if workers < 2:
        raise InputError("--workers must be >= 2 for multi-worker training (one process: plain `rocket-ctr train`)")
    if "--strategy" in train_args or any(a.startswith("--strategy=") for a in train_args):
        raise InputError("launch-local sets --strategy itself; leave it out of the train arguments")
    if not train_args:
        raise InputError("give the train arguments after --, e.g. -- --train data/train --run-dir runs/mw")
    check_train_logs(train_args)  # a bad log is refused here, before any worker or run dir exists
    attempt = 0
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            group = Group(train_args, workers, attempt)
            try:
                code, failed = group.wait()
            finally:
                group.stop()
            if code == 0:
                print(f"launch-local: done ({workers} worker(s), {attempt} restart(s))", flush=True)
                return 0
            reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            if code == 2 or attempt >= max_restarts:
                print(f"launch-local: {failed} failed ({reason}); giving up", file=sys.stderr, flush=True)
                return 2 if code == 2 else 1
            attempt += 1
            print(f"launch-local: {failed} failed ({reason}); restarting the group "
                  f"(restart {attempt} of {max_restarts}), resuming from the last checkpoint", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_train_logs(train_args: list[str]) -> None:
    """The training (and eval) logs of ``train_args`` through the log gate, with the spec the
    workers will use (``--spec``, else the one beside the data, else the reference schema; a mode
    without a booster leaves the booster-only columns out; the user id embedded where the training
    log calls for it)."""
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.io.log_gate import check_log
    from rocket_ctr.pipelines import train as train_command
    from rocket_ctr.train.run_spec import run_spec, with_user_id_embedding

    commands = argparse.ArgumentParser(prog="rocket-ctr launch-local --").add_subparsers()
    train_command.add_parser(commands)
    args = commands.choices["train"].parse_args(train_args)
    try:
        given = FeatureSpec.load(args.spec) if args.spec else None
    except ValueError as err:
        raise InputError(str(err)) from None
    config = train_command.config_from_args(args)
    spec, _ = run_spec(given, args.train, None, config)
    spec, _ = with_user_id_embedding(spec, check_log(args.train, spec), config)
    for paths in (args.train, args.eval):
        if paths is not None:
            check_log(paths, spec)


def run(args) -> int:
    train_args = list(args.train_args)
    if train_args and train_args[0] == "--":
        train_args = train_args[1:]
    if train_args and train_args[0] == "train":
        train_args = train_args[1:]
    return launch(train_args, args.workers, args.max_restarts)
