"""Batch-scoring benchmark: ``rocket-ctr predict`` rows/s and peak memory on a generated log.

    python benchmarks/bench_predict.py --cores 2                         # 2 M rows, light tower (an export)
    python benchmarks/bench_predict.py --rows 10000000 --cores 2         # the peak-RSS goal
    python benchmarks/bench_predict.py --rows 200000 --processes 2       # quicker; 2 processes

A log of ``--rows`` rows is generated (``rocket_ctr.datagen.synthetic``, default knobs, histories
up to 50 steps) into ``--work-dir/log_<rows>`` and reused. The model is the default architecture,
untrained (weights do not change the cost), exported once with ``export_light`` (without XLA
unless ``--xla``) into ``--work-dir/export_<rows>``. ``rocket-ctr predict --model EXPORT --data
LOG --out OUT`` then runs in a child process: rows/s is the scoring loop's own figure (read from
its ``_predict-*.json``; start-up excluded, any XLA compilation included) and the wall time with
start-up; peak RSS is the child's
(``getrusage(RUSAGE_CHILDREN)``; with ``--processes`` the largest process's). Goals (2 cores):
>= 200k rows/s for the light tower; peak RSS < 2 GiB on 10 M rows. The same stream with a scorer
that returns zeros is timed too (in this process): the pipeline's own bound. Results are
appended to ``--jsonl``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
GIB = 1024**3


def ensure_export(work_dir: Path, log: Path, xla: bool) -> Path:
    """The default architecture's light tower, untrained, exported for this log's FeatureSpec; reused
    until a ``rocket_ctr`` source file changes (an export keeps the graph of the code that wrote it)."""
    base = work_dir / f"export_{log.name.split('_', 1)[1]}{'_xla' if xla else ''}"
    saved = base / "1" / "saved_model.pb"
    if saved.is_file():
        if not source_changed_since(saved.stat().st_mtime):
            return base
        print(f"re-exporting {base}: rocket_ctr changed since it was written", flush=True)
        shutil.rmtree(base)
    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.features.signatures import example_rows
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.model.rocket import RocketModel

    spec = FeatureSpec.load(log / "feature_spec.json")
    model = RocketModel(spec, RocketConfig())
    model(example_rows(spec), training=False)
    export_light(model, spec, base, 1, jit_compile=xla, data=next(log.rglob("*.parquet")), sample_size=64,
                 warmup_candidates=64)
    return base


def source_changed_since(timestamp: float) -> bool:
    """Whether any ``rocket_ctr`` source file was modified after ``timestamp``."""
    import rocket_ctr

    return max(p.stat().st_mtime for p in Path(rocket_ctr.__file__).parent.rglob("*.py")) > timestamp


def pipeline_only(log: Path, batch_size: int) -> float:
    """Rows/s of the scoring stream with a scorer that returns zeros: reading, validation, numpy
    features, tf.data hand-over and putting scores back in order, without the model."""
    import tensorflow as tf

    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.io.log_gate import resolve_paths
    from rocket_ctr.io.row_ranges import file_fragments, plan_shard
    from rocket_ctr.scoring.scorer import score_ranges

    spec = FeatureSpec.load(log / "feature_spec.json")
    null = {"light": lambda **features: {"probabilities": tf.zeros(tf.shape(features["hist_len"]), tf.float32)}}
    pieces = plan_shard(file_fragments(resolve_paths(log)))
    started, rows = time.perf_counter(), 0
    for keys, _ in score_ranges(pieces, spec, null, key_columns=[spec.user_id], batch_size=batch_size):
        rows += keys.num_rows
    return rows / (time.perf_counter() - started)


def run_predict(export: Path, log: Path, out: Path, args) -> dict:
    """``rocket-ctr predict`` in a child process; its rows/s, wall time and peak RSS."""
    command = [sys.executable, "-m", "rocket_ctr.pipelines.cli", "predict", "--model", str(export),
               "--data", str(log), "--out", str(out), "--overwrite", "--no-progress",
               "--batch-size", str(args.batch_size), "--processes", str(args.processes)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"predict failed ({done.returncode}):\n{done.stderr[-3000:]}")
    shards = [json.loads(p.read_text()) for p in sorted(out.glob("_predict-*.json"))]
    rows = sum(s["rows"] for s in shards)
    loop_seconds = max(s["seconds"] for s in shards)
    return {"rows": rows, "rows_per_s": rows / loop_seconds, "loop_seconds": loop_seconds, "wall_seconds": wall,
            "rows_per_s_with_startup": rows / wall,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "output": done.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the generated log")
    parser.add_argument("--batch-size", type=int, default=8_192, help="predict --batch-size")
    parser.add_argument("--processes", type=int, default=1, help="predict --processes")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rocket_bench"), help="logs, export, output")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=False,
                        help="score with an XLA export (each new batch shape costs a compilation)")
    parser.add_argument("--cores", type=int, default=None, help="pin this process (and children) to N CPU cores")
    parser.add_argument("--jsonl", type=Path, default=Path("benchmarks/results/bench_predict.jsonl"),
                        help="results appended here")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    cores, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
    print(f"CPU cores available: {cores}  (load average {load:.1f}: other processes share them)", flush=True)
    from bench_pipeline import ensure_log

    args.work_dir.mkdir(parents=True, exist_ok=True)
    log = ensure_log(args.work_dir, args.rows)
    export = ensure_export(args.work_dir, log, args.xla)
    result = run_predict(export, log, args.work_dir / f"predictions_{args.rows}", args)
    print(result.pop("output"))
    result["pipeline_only_rows_per_s"] = pipeline_only(log, args.batch_size)
    print(f"the stream without the model (zeros as scores): {result['pipeline_only_rows_per_s']:,.0f} rows/s")
    print(f"light tower, {result['rows']:,} rows, batch {args.batch_size}, {args.processes} process(es): "
          f"{result['rows_per_s']:,.0f} rows/s in the scoring loop ({result['rows_per_s_with_startup']:,.0f} "
          f"with start-up, {result['wall_seconds']:.1f} s wall); peak RSS {result['peak_rss_bytes'] / GIB:.2f} GiB")
    speed, memory = result["rows_per_s"] >= 200_000, result["peak_rss_bytes"] < 2 * GIB
    print(f"  goals on 2 cores: >= 200,000 rows/s: {'met' if speed else 'NOT met'}; "
          f"peak RSS < 2 GiB: {'met' if memory else 'NOT met'} ({cores} cores, load {load:.1f})")
    record = {"bench": "predict", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cores": cores, "load_average": load,
              "batch_size": args.batch_size, "processes": args.processes, "xla": args.xla, **result}
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    with args.jsonl.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"  appended to {args.jsonl}")


if __name__ == "__main__":
    main()
