"""``rocket-ctr replay``: logged rows sent as 1 user × N candidates requests, compared with batch scores.

Groups the log's rows into requests (``--group-by user+ts``: one logged impression; ``user``),
sends each through the exported SavedModel's ``serving_default`` in this process and, with
``--target``, to a live TF Serving endpoint, and compares every candidate's score with the
row-wise batch score of the same inputs (``score_rows``, what ``rocket-ctr predict`` writes).
Prints the largest |difference| per target and the rows beyond ``--tolerance``; exit code 1 when
any row differs.
"""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    """Registers the ``replay`` sub-command."""
    parser = subparsers.add_parser("replay", help="check 1xN serving requests against batch scores on logged rows",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", required=True, metavar="BASE[/V]", help="the exported SavedModel (highest version under BASE)")
    add("--data", required=True, help="Parquet file, folder or glob of logged rows")
    add("--target", metavar="HOST:PORT", help="also a live endpoint: HOST:PORT or grpc://HOST:PORT (gRPC), "
        "http://HOST:PORT (REST)")
    add("--model-name", default="model", help="model name at --target (default: %(default)s)")
    add("--group-by", choices=("user+ts", "user"), default="user+ts",
        help="rows of one request (default: %(default)s)")
    add("--max-candidates", type=int, default=512, help="largest N of a request (default: %(default)s)")
    add("--requests", type=int, default=1000, help="requests to replay, 0 = the whole log (default: %(default)s)")
    add("--tolerance", type=float, default=1e-5, help="largest allowed |request - batch| (default: %(default)s)")
    add("--show", type=int, default=10, help="differing rows printed (default: %(default)s)")
    parser.set_defaults(func=run)


def saved_model_target(loaded):
    """``serving_default`` of a loaded SavedModel as a replay target, inputs typed by its signature."""
    import tensorflow as tf

    function = loaded.signatures["serving_default"]
    specs = function.structured_input_signature[1]

    def score(user, candidates):
        inputs = {**user, **candidates}
        return function(**{k: tf.constant(inputs[k], dtype=s.dtype) for k, s in specs.items()})["probabilities"].numpy()
    return score


def endpoint_target(target: str, model_name: str):
    """A live TF Serving endpoint (gRPC or REST) as a replay target, and its client (to close)."""
    from rocket_ctr.serving.client import connect

    client = connect(target if "://" in target else f"grpc://{target}", model_name)
    return (lambda user, candidates: client.score(user, candidates)), client


def run(args) -> int:
    from rocket_ctr.errors import InputError
    from rocket_ctr.io.log_gate import check_log
    from rocket_ctr.io.row_ranges import file_fragments, plan_shard
    from rocket_ctr.scoring.replay import replay
    from rocket_ctr.scoring.scorer import export_spec, load_saved_model, saved_model_scorer

    for flag in ("max_candidates", "show"):
        if getattr(args, flag) < (1 if flag == "max_candidates" else 0):
            raise InputError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.requests < 0 or not args.tolerance >= 0:
        raise InputError(f"--requests and --tolerance must be >= 0, got {args.requests} and {args.tolerance}")
    loaded, info = load_saved_model(args.model)
    spec = export_spec(info, args.data)
    files = check_log(args.data, spec).files
    targets, client = {"savedmodel": saved_model_target(loaded)}, None
    if args.target:
        targets[args.target], client = endpoint_target(args.target, args.model_name)
    try:
        report = replay(plan_shard(file_fragments(files)), spec, saved_model_scorer(loaded, info), targets,
                        group_by=args.group_by, max_candidates=args.max_candidates, max_requests=args.requests,
                        tolerance=args.tolerance, keep=args.show)
    finally:
        if client is not None:
            client.close()
    print(f"replayed {report.requests:,} requests ({report.rows:,} rows, N <= {report.max_candidates_seen}) "
          f"from {args.data} against the batch scores of {info['path']}")
    for name in targets:
        print(f"  {name}: max |request - batch| = {report.max_abs_diff[name]:.3g}, "
              f"{report.differing_rows[name]:,} row(s) beyond {args.tolerance:g}")
    for m in report.mismatches:
        print(f"  differs at {m.target}: {json.dumps(m.keys)} batch {m.batch:.6f} request {m.request:.6f} "
              f"(|diff| {m.diff:.3g})")
    return 0 if report.ok else 1
