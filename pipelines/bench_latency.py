"""``rocket-ctr bench-latency``: per-request latency of one user x N candidates."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _sizes(text: str) -> tuple:
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"candidate counts must be >= 1, got {text!r}")
    return sizes


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench-latency", help="latency of 1 user x N candidates: in-process SavedModel, gRPC and REST",
        description="Without --target: measures the export in process (what TF Serving executes, "
                    "without RPC), then starts the test server on free loopback ports and measures "
                    "gRPC and REST end to end; --compare adds exports (e.g. the booster, a no-XLA "
                    "export) as p50 ratios. With --target: measures that TF Serving endpoint only.")
    add = parser.add_argument
    add("--model", help="export base or BASE/<version>")
    add("--target", help="grpc://HOST:PORT or http://HOST:PORT of a running TF Serving endpoint")
    add("--model-name", default="model", help="model name at --target (default: %(default)s)")
    add("--compare", action="append", default=[], metavar="EXPORT",
        help="another export measured in process; repeatable")
    add("--candidates", type=_sizes, default=(100, 300, 500), help="N values (default: 100,300,500)")
    add("--history", type=int, default=50, help="history length L (default: %(default)s)")
    add("--requests", type=int, default=1000, help="timed requests per case (default: %(default)s)")
    add("--concurrency", type=int, default=1, help="client threads (default: %(default)s)")
    add("--warmup", type=int, default=20, help="untimed requests per case first (default: %(default)s)")
    add("--server", action=argparse.BooleanOptionalAction, default=True,
        help="without --target, also measure through the test server (default: on)")
    add("--allow-remote", action="store_true", help="allow a --target that is not a loopback address")
    add("--out", help="folder for latency.json and latency.png")
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.errors import InputError
    from rocket_ctr.serving.latency import format_report, plot_histogram, run_benchmark

    if args.history < 0:
        raise InputError(f"--history must be >= 0, got {args.history}")
    from rocket_ctr.serving.status import ServingError

    try:
        report = run_benchmark(args.model, args.target, compare=args.compare, sizes=args.candidates,
                               history=args.history, requests=args.requests, concurrency=args.concurrency,
                               warmup=args.warmup, model_name=args.model_name, server=args.server,
                               allow_remote=args.allow_remote)
    except ServingError as err:
        raise InputError(f"{args.target or args.model}: {err}") from None
    print(format_report(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in report.items() if k != "samples"}
        (out / "latency.json").write_text(json.dumps(data, indent=2) + "\n")
        plot_histogram(report, out / "latency.png")
        print(f"wrote {out / 'latency.json'} and {out / 'latency.png'}")
    return 0
