"""``rocket-ctr export``: a trained run's light tower as a versioned SavedModel for TF Serving."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export the light tower as BASE/<version>/ SavedModel for TF Serving",
        description="Writes EXPORT_BASE/<version>/ (saved_model.pb, variables/, assets.extra/ warmup "
                    "records) atomically, after checking the SavedModel reproduces the trained tower "
                    "within 1e-5. Point TF Serving's --model_base_path at EXPORT_BASE.")
    add = parser.add_argument
    add("--run-dir", required=True, help="a run dir written by rocket-ctr train")
    add("--export-base", required=True, help="folder of numeric version folders (created if missing)")
    add("--version", type=int, help="version number (default: the next integer under the base)")
    add("--tower", choices=("light", "booster"), default="light",
        help="light (served; default) or booster (latency comparisons only)")
    add("--xla", action=argparse.BooleanOptionalAction, default=True,
        help="XLA-compile the model part (TF Serving then needs --xla_cpu_compilation_enabled=true)")
    add("--data", help="Parquet rows (e.g. the eval log) for verification and warmup (default: random ids)")
    add("--warmup-candidates", type=int, default=512,
        help="largest candidate count the warmup records cover (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.errors import InputError
    from rocket_ctr.export import export_light
    from rocket_ctr.run_dir import restore_model

    if args.warmup_candidates < 1:
        raise InputError(f"--warmup-candidates must be >= 1, got {args.warmup_candidates}")
    model, spec, _ = restore_model(args.run_dir)
    result = export_light(model, spec, args.export_base, args.version, tower=args.tower, jit_compile=args.xla,
                          data=args.data, warmup_candidates=args.warmup_candidates, source=args.run_dir)
    print(f"exported the {result.tower} tower ({'XLA' if result.jit_compile else 'no XLA'}) to {result.path}")
    print("  signatures: serving_default (1 user x N candidates), score_rows (N rows) -> probabilities")
    print(f"  verified on {result.checked_rows} rows: max |SavedModel - in-memory| = {result.max_abs_diff:.2g}")
    print(f"  {result.warmup_records} warmup records in {result.path / 'assets.extra'}")
    for folder in result.removed_stale:
        print(f"  removed {folder}: the staging folder of an export that was killed")
    if result.jit_compile:
        print("  TF Serving runs XLA exports only with --xla_cpu_compilation_enabled=true")
    return 0
