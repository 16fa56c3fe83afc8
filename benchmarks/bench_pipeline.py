"""Input-pipeline benchmark: throughput (rows/s) and peak memory of ``rocket_ctr.io.reader.make_dataset``.

    python benchmarks/bench_pipeline.py                     # 2 M rows for throughput, 10 M for RSS
    python benchmarks/bench_pipeline.py --rows 200000 --rss-rows 1000000 --cores 2

(a) Throughput: a generated log (histories up to 50 steps) is streamed end to end into padded
    batches of 1024, once with length bucketing (the default) and once padded to the maximum
    (``bucket_by_length=False``); rows are counted inside the graph (``Dataset.reduce``), so the
    number is the input pipeline's alone. Goal: >= 500k rows/s on 2 cores.
(b) Peak RSS: a larger generated log is streamed end to end (shuffled, as in training) in a child
    process whose peak resident set is read back (``getrusage(RUSAGE_CHILDREN)``), next to a child
    that only imports TensorFlow and builds the dataset (the runtime's own share). Goal: < 2 GiB.

Generated logs go to ``--work-dir/log_<rows>`` and are reused when already there.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
GIB = 1024**3


def ensure_log(work_dir: Path, n_rows: int, max_history: int = 50) -> Path:
    """A generated log of ``n_rows`` rows in ``work_dir/log_<n_rows>`` (generated once, then reused)."""
    folder = work_dir / f"log_{n_rows}"
    params = folder / "params.json"
    if params.is_file():  # written last by the generator: the log is complete
        config = json.loads(params.read_text()).get("config", {})
        if config.get("n_rows") == n_rows and config.get("max_history") == max_history:
            print(f"reusing {folder}", flush=True)
            return folder
    from rocket_ctr.datagen.synthetic import generate

    print(f"generating {n_rows:,} rows into {folder} ...", flush=True)
    summary = generate(folder, n_rows=n_rows, max_history=max_history, seed=0)
    print(f"  done in {summary['seconds']:.1f} s", flush=True)
    return folder


def _spec(folder: Path):
    from rocket_ctr.features.spec import FeatureSpec

    path = folder / "feature_spec.json"
    return FeatureSpec.load(path) if path.is_file() else FeatureSpec()


def stream(folder: Path, batch_size: int, **kwargs) -> tuple[int, int, float]:
    """Streams the whole log once; returns (rows, padded history cells, seconds)."""
    import tensorflow as tf

    from rocket_ctr.io.reader import make_dataset, surfacing_input_errors

    spec = _spec(folder)
    history = spec.history_columns[0]
    started = time.perf_counter()
    with surfacing_input_errors():
        dataset = make_dataset(folder, spec, batch_size=batch_size, **kwargs)

        def add(state, batch):
            features, label = batch
            shape = tf.shape(features[history], out_type=tf.int64)
            return state[0] + tf.shape(label, out_type=tf.int64)[0], state[1] + shape[0] * shape[1]

        zero = tf.constant(0, tf.int64)
        rows, cells = dataset.reduce((zero, zero), add)
    return int(rows), int(cells), time.perf_counter() - started


def throughput(folder: Path, batch_size: int, repeats: int) -> dict:
    """Best-of-``repeats`` rows/s with and without length bucketing (alternating runs)."""
    best = {}
    for _ in range(repeats):
        for bucketed in (True, False):
            rows, cells, seconds = stream(folder, batch_size, bucket_by_length=bucketed)
            if bucketed not in best or seconds < best[bucketed][2]:
                best[bucketed] = (rows, cells, seconds)
    return {("bucketed" if k else "unbucketed"): {"rows": r, "padded_cells": c, "seconds": s, "rows_per_s": r / s}
            for k, (r, c, s) in best.items()}


def peak_rss_child(folder: Path, batch_size: int, rows_limit: int | None) -> dict:
    """Runs the streaming in a fresh child process and reads back its peak RSS."""
    command = [sys.executable, os.path.abspath(__file__), "--_child", str(folder), "--batch-size", str(batch_size)]
    if rows_limit is not None:
        command += ["--_limit", str(rows_limit)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"streaming child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # RUSAGE_CHILDREN is the largest child so far: it names this child only when it is the largest
    report["children_peak_bytes"] = children_peak if children_peak > before * 1024 else None
    return report


def _child(folder: Path, batch_size: int, limit: int | None) -> None:
    """Child process: stream (shuffled, as in training) and print rows, seconds and own peak RSS."""
    if limit == 0:  # baseline: TensorFlow imported, dataset built and one batch read
        import tensorflow as tf  # noqa: F401

        from rocket_ctr.io.reader import make_dataset

        started = time.perf_counter()
        for _ in make_dataset(folder, _spec(folder), batch_size=batch_size).take(1):
            pass
        rows, seconds = batch_size, time.perf_counter() - started
    else:
        rows, _, seconds = stream(folder, batch_size, shuffle=True, seed=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "self_peak_bytes": peak}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the throughput log (default 2M)")
    parser.add_argument("--rss-rows", type=int, default=10_000_000, help="rows of the peak-RSS log (default 10M)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rocket_bench"), help="where logs are generated")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="throughput runs per mode; the best counts")
    parser.add_argument("--cores", type=int, default=None, help="pin this process (and children) to N CPU cores")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--_child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        _child(args._child, args.batch_size, args._limit)
        return 0
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"CPU cores available: {cores}  (load average {load:.1f}: other processes share them)", flush=True)

    if not args.skip_throughput:
        folder = ensure_log(args.work_dir, args.rows)
        result = throughput(folder, args.batch_size, args.repeats)
        b, u = result["bucketed"], result["unbucketed"]
        print(f"\n(a) throughput, {b['rows']:,} rows, batches of {args.batch_size}, best of {args.repeats}")
        for name, r in result.items():
            print(f"    {name:<11} {r['rows_per_s']:>12,.0f} rows/s  ({r['seconds']:.2f} s, "
                  f"{r['padded_cells'] / r['rows']:.1f} padded history steps per row)")
        print(f"    bucketed / unbucketed: {b['rows_per_s'] / u['rows_per_s']:.2f}x rows/s, "
              f"{u['padded_cells'] / b['padded_cells']:.2f}x fewer padded history cells")
        goal = "met" if b["rows_per_s"] >= 500_000 else "NOT met"
        print(f"    goal >= 500,000 rows/s on 2 cores: {goal} ({cores} cores here)", flush=True)

    if not args.skip_rss:
        folder = ensure_log(args.work_dir, args.rss_rows)
        streamed = peak_rss_child(folder, args.batch_size, None)
        baseline = peak_rss_child(folder, args.batch_size, 0)
        peak = streamed["children_peak_bytes"] or streamed["self_peak_bytes"]
        print(f"\n(b) peak RSS streaming {streamed['rows']:,} rows end to end (shuffled) in a child process")
        print(f"    peak RSS        {peak / GIB:.2f} GiB  ({streamed['rows'] / streamed['seconds']:,.0f} rows/s)")
        print(f"    TF + 1 batch    {baseline['self_peak_bytes'] / GIB:.2f} GiB  (the runtime's own share)")
        print(f"    goal < 2 GiB: {'met' if peak < 2 * GIB else 'NOT met'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
