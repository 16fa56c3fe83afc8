"""``rocket-ctr export``: a trained run's light tower as a versioned SavedModel for TF Serving."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export the light tower as BASE/<version>/ SavedModel for TF Serving",
        description="Writes EXPORT_BASE/<version>/ (saved_model.pb, variables/, assets.extra/ warmup "
                    "records) atomically, after checking the SavedModel reproduces the trained tower "
                    "within 1e-5. Point TF Serving's --model_base_path at EXPORT_BASE.")
    add = parser.add_argument
    add("--run-dir", required=True, help="a run dir written by rocket-ctr train")
    add("--export-base", help="folder of numeric version folders (created if missing); "
                              "with --gate-against: that base")
    add("--version", type=int, help="version number (default: the next integer under the base)")
    add("--tower", choices=("light", "booster"), default="light",
        help="light (served; default) or booster (latency comparisons only)")
    add("--xla", action=argparse.BooleanOptionalAction, default=True,
        help="XLA-compile the model part (TF Serving then needs --xla_cpu_compilation_enabled=true)")
    add("--data", help="Parquet rows (e.g. the eval log) for verification and warmup (default: random ids)")
    add("--warmup-candidates", type=int, default=512,
        help="largest candidate count the warmup records cover (default: %(default)s)")
    add_gate_arguments(parser)
    parser.set_defaults(func=run)


# GateCriteria field -> flag: the CLI shows the library's FieldErrors with what the user typed
GATE_FLAGS = {"max_gauc_drop": "--max-gauc-drop", "max_logloss_increase": "--max-logloss-increase",
              "pcoc_tolerance": "--pcoc-tolerance", "max_latency_increase": "--max-latency-increase",
              "latency_candidates": "--latency-candidates", "latency_requests": "--latency-requests"}


def field_flags() -> dict[str, str]:
    """How this command names the gate's fields in error messages: its flags."""
    return GATE_FLAGS


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """``--gate-against BASE`` and the gate's tolerances (defaults: rocket_ctr.export.gate.promotion.GateCriteria)."""
    from rocket_ctr.export.gate.criteria import GateCriteria

    defaults = GateCriteria()
    group = parser.add_argument_group(
        "export gate", "with --gate-against BASE, the candidate and the version now serving under BASE (its "
                       "highest version) are scored on --data; the candidate becomes BASE's next version only "
                       "if every criterion holds, else BASE's versions stay as they are and the command exits 1. "
                       "A JSON report is printed either way.")
    group.add_argument("--gate-against", metavar="BASE", help="export base whose serving version the candidate "
                                                              "must match or beat (requires --data: held-out rows)")
    helps = {"max_gauc_drop": "largest GAUC drop accepted (absolute)",
             "max_logloss_increase": "largest log loss increase accepted (relative)",
             "pcoc_tolerance": "|PCOC - 1| accepted (or no worse than serving's)",
             "max_latency_increase": "largest p99 latency increase accepted (relative)",
             "latency_candidates": "candidates per timed request",
             "latency_requests": "timed requests per model"}
    for name, flag in GATE_FLAGS.items():
        default = getattr(defaults, name)
        group.add_argument(flag, dest=f"gate_{name}", type=type(default), default=default, metavar="N",
                           help=f"{helps[name]} (default: %(default)s)")
    group.add_argument("--gate-report", metavar="FILE", help="also write the JSON report here")


def run(args) -> int:
    from rocket_ctr.errors import InputError
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.train.run_dir import restore_model

    if args.warmup_candidates < 1:
        raise InputError(f"--warmup-candidates must be >= 1, got {args.warmup_candidates}")
    if args.gate_against is not None:
        return run_gate(args)
    if args.export_base is None:
        raise InputError("--export-base is required (or --gate-against BASE)")
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


def run_gate(args) -> int:
    """``--gate-against``: export, score against the serving version, promote or not; exit 1 if not."""
    import os

    from rocket_ctr.errors import InputError
    from rocket_ctr.export.gate.criteria import GateCriteria
    from rocket_ctr.export.gate.promotion import gate_export, report_json, serving_version
    from rocket_ctr.train.run_dir import restore_model

    if args.export_base is not None and os.path.abspath(args.export_base) != os.path.abspath(args.gate_against):
        raise InputError(f"--export-base {args.export_base} differs from --gate-against {args.gate_against}: "
                         "a gated candidate is promoted into the base it was gated against")
    if args.data is None:
        raise InputError("--gate-against needs --data: held-out rows to score both models on")
    if args.version is not None or args.tower != "light":
        raise InputError("--gate-against promotes the light tower into the next version; "
                         "drop --version and --tower")
    criteria = GateCriteria(**{name: getattr(args, f"gate_{name}") for name in GATE_FLAGS})
    serving_version(args.gate_against)  # one clear line before the (slow) restore when the base has none
    model, spec, _ = restore_model(args.run_dir)
    report = gate_export(model, spec, args.gate_against, args.data, criteria, report_path=args.gate_report,
                         log=lambda line: print(line, file=sys.stderr), jit_compile=args.xla,
                         warmup_candidates=args.warmup_candidates, source=args.run_dir)
    print(report_json(report))
    if report["promoted"]:
        print(f"promoted: {report['path']} (every criterion held)", file=sys.stderr)
        return 0
    print(f"not promoted: {', '.join(report['failed'])} failed; {args.gate_against} is unchanged "
          f"(version {report['serving']['version']} still serves)", file=sys.stderr)
    return 1
