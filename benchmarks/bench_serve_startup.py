"""Seconds until ``rocket-ctr serve`` answers its first request, and until its warmup is done, by startup option.

    .venv/bin/python benchmarks/bench_serve_startup.py --export exports/light                 # every option
    .venv/bin/python benchmarks/bench_serve_startup.py --export exports/light --default --blocking
    .venv/bin/python benchmarks/bench_serve_startup.py --export exports/light --threads 2 --fewer 34 --cores 2

For each option the test server (``rocket-ctr serve``, a child process on free loopback ports)
starts on the export's highest version (``--export``: an export base or a version folder). From
the moment the process is spawned, this script sends one ``serving_default`` request (1 user x
``--candidates`` (200) candidates x ``--history`` (50) steps, random ids, gRPC, a new channel each
try) every 0.1 s until one is answered, then polls the REST status until the version is AVAILABLE
(every warmup record replayed). It prints one line per option: seconds to the first answer, how
long that answer took, seconds to AVAILABLE.

Options (none given: all of them; the server's other flags stay at their defaults):

* ``--default``: ``rocket-ctr serve`` as it is: the first version answers once loaded, its
  warmup records are replayed in the background.
* ``--blocking``: ``--no-serve-during-warmup``: it answers only once every record is replayed
  (the order TF Serving keeps).
* ``--threads N``: ``--no-serve-during-warmup --warmup-threads N``: records replayed N at a time.
* ``--cache``: ``--no-serve-during-warmup --xla-cache-dir`` on a new folder: a first start (it
  fills the cache), a second start (it reads it), and a third with ``--default`` (reads it too).
* ``--fewer K``: ``--no-serve-during-warmup`` on a copy of the export that keeps only its first K
  warmup records (the export orders them by how often the log's rows hit each history bucket).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def trimmed_copy(version_dir: Path, keep: int, into: Path) -> Path:
    """A version folder beside ``into`` whose warmup file holds the first ``keep`` records of
    ``version_dir``'s (the model files are links to the original)."""
    import tensorflow as tf

    from rocket_ctr.export.writer import INFO_FILE, WARMUP_FILE

    target = into / version_dir.name
    target.mkdir(parents=True)
    for item in version_dir.iterdir():
        if item.name != "assets.extra":
            (target / item.name).symlink_to(item.resolve())
    extra = target / "assets.extra"
    extra.mkdir()
    if (version_dir / "assets.extra" / INFO_FILE).is_file():
        shutil.copy(version_dir / "assets.extra" / INFO_FILE, extra / INFO_FILE)
    records = tf.data.TFRecordDataset(str(version_dir / "assets.extra" / WARMUP_FILE)).take(keep)
    with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
        for record in records:
            writer.write(record.numpy())
    return target


def first_answer(server, candidates: int, history: int, timeout: float) -> tuple[float, float]:
    """(monotonic time of the first answered request, seconds that request took)."""
    from rocket_ctr.serving.client import connect
    from rocket_ctr.serving.latency import synthetic_request
    from rocket_ctr.serving.status import ServingError

    deadline, inputs = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with connect(server.grpc_target, server.model_name, timeout=timeout) as client:
                if inputs is None:
                    inputs = synthetic_request(client.signature()[0], candidates, history)
                sent = time.perf_counter()
                client.predict(inputs)
                return time.monotonic(), time.perf_counter() - sent
        except (ServingError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"no answer after {timeout:.0f} s:\n{server.log_tail()}")


def measure(base: Path, flags: list, args) -> dict:
    """Starts the server on ``base`` with ``flags``; seconds to the first answer and to AVAILABLE."""
    from rocket_ctr.serving.launcher import ServerProcess

    server = ServerProcess(base, "startup", args=flags, timeout=args.timeout)
    started = time.monotonic()
    try:
        server.start(wait=False)
        answered, took = first_answer(server, args.candidates, args.history, args.timeout)
        server.wait_for_version(None, args.timeout - (time.monotonic() - started))
        available = time.monotonic()
        log = server.log_tail(100_000)
    finally:
        server.stop()
    replayed = [line for line in log.splitlines() if "AVAILABLE:" in line]
    return {"first_answer_s": answered - started, "request_s": took, "available_s": available - started,
            "log": replayed[-1].split("AVAILABLE: ")[-1] if replayed else ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="export base or version folder")
    parser.add_argument("--default", action="store_true", help="serve's defaults (warmup in the background)")
    parser.add_argument("--blocking", action="store_true", help="--no-serve-during-warmup")
    parser.add_argument("--threads", type=int, default=0, metavar="N", help="blocking, N warmup threads")
    parser.add_argument("--cache", action="store_true", help="blocking, persistent XLA cache: cold and warm starts")
    parser.add_argument("--fewer", type=int, default=0, metavar="K", help="blocking, only the first K records")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per start")
    parser.add_argument("--cores", type=int, default=None, help="pin this process (and children) to N CPU cores")
    args = parser.parse_args(argv)
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    everything = not (args.default or args.blocking or args.threads or args.cache or args.fewer)
    import rocket_ctr.serving.client  # noqa: F401 - imported before any timed start
    import rocket_ctr.serving.latency  # noqa: F401
    from rocket_ctr.export.writer import read_export_info, resolve_export
    from rocket_ctr.serving.warmup import read_warmup

    version = resolve_export(args.export).resolve()
    info, records = read_export_info(version), len(read_warmup(version))
    print(f"export {version} ({'XLA' if info.get('jit_compile') else 'no XLA'}, {records} warmup records); "
          f"{len(os.sched_getaffinity(0))} CPU cores; request 1 user x {args.candidates} candidates x "
          f"{args.history} history steps", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serve-startup-") as work:
        work = Path(work)
        base = work / "base"
        base.mkdir()
        (base / version.name).symlink_to(version)
        runs = []  # (label, base, flags)
        if everything or args.default:
            runs.append(("default (answers during warmup)", base, []))
        if everything or args.blocking:
            runs.append(("blocking (TF Serving's order)", base, ["--no-serve-during-warmup"]))
        for threads in ([2] if everything else []) + ([args.threads] if args.threads else []):
            runs.append((f"blocking, {threads} warmup threads", base,
                         ["--no-serve-during-warmup", "--warmup-threads", str(threads)]))
        if everything or args.cache:
            cache = ["--xla-cache-dir", str(work / "xla-cache")]
            runs += [("blocking, XLA cache, first start", base, ["--no-serve-during-warmup", *cache]),
                     ("blocking, XLA cache, second start", base, ["--no-serve-during-warmup", *cache]),
                     ("default, XLA cache, third start", base, cache)]
        for keep in ([34] if everything else []) + ([args.fewer] if args.fewer else []):
            fewer = trimmed_copy(version, keep, work / f"fewer-{keep}")
            runs.append((f"blocking, first {keep} of {records} records", fewer.parent, ["--no-serve-during-warmup"]))
        lines = []
        for label, served, flags in runs:
            load = os.getloadavg()[0]
            result = measure(served, flags, args)
            lines.append(f"{label:<40} first answer {result['first_answer_s']:6.1f} s (that request "
                         f"{result['request_s']:5.2f} s)   AVAILABLE {result['available_s']:6.1f} s   "
                         f"load {load:.1f}   [{result['log']}]")
            print(lines[-1], flush=True)
            time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
