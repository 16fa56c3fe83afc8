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
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=200, help="candidates per latency request (default 200)")
    parser.add_argument("--requests", type=int, default=300, help="timed latency requests per backend")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=False,
                        help="XLA-compiled export (faster per request; the test server answers within seconds and "
                             "compiles its other request shapes in the background, about a minute on 2 cores)")
    parser.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                        help="start from an empty --out (default); --no-fresh resumes an earlier demo run")
    parser.set_defaults(func=run)


def _stage(title: str) -> float:
    print(f"\n== {title} ==", flush=True)
    return time.perf_counter()


def run(args) -> int:
    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.datagen.synthetic import generate
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.pipelines.inspect import format_summary, summarize
    from rocket_ctr.pipelines.train import field_flags, format_metrics
    from rocket_ctr.serving.latency import format_report, frontier_point, run_benchmark
    from rocket_ctr.train.run_dir import restore_model
    from rocket_ctr.train.trainer import Trainer

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
    metrics = Trainer(run_dir, data / "train", data / "test", config, spec, field_names=field_flags()).fit()
    print(format_metrics(metrics))
    print(f"   ({time.perf_counter() - started:.1f} s)")
    outputs["training run (metrics.json, curves.png, checkpoints/, tensorboard/)"] = run_dir

    started = _stage("4. export the light tower for TF Serving (verified, with warmup requests)")
    model, spec, _ = restore_model(run_dir)
    export = export_light(model, spec, out / "exports" / "light", data=data / "test", jit_compile=args.xla,
                          source=run_dir)
    print(f"   {export.path}: version {export.version}, {export.checked_rows} rows verified "
          f"(max |diff| {export.max_abs_diff:.1e}), {export.warmup_records} warmup records"
          f"  ({time.perf_counter() - started:.1f} s)")
    outputs["light-tower SavedModel (TF Serving layout)"] = export.path

    _stage(f"5. serve it (TF-Serving-protocol test server) and measure 1 user x {args.candidates} candidates")
    report = run_benchmark(model=export.path, sizes=(args.candidates,), history=50, requests=args.requests,
                           log=lambda line: None)
    print(format_report(report))
    print(frontier_point(report, f"light tower (light_interest {config.model.light_interest})",
                         metrics.get("light", {}).get("gauc")))

    print("\n== outputs ==")
    for what, where in outputs.items():
        print(f"   {what}: {where}")
    return 0
