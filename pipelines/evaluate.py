"""``rocket-ctr evaluate``: the metrics JSON of a trained run on other data."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="AUC/GAUC/logloss of a trained run on a Parquet log",
                                   description=__doc__)
    parser.add_argument("--run-dir", required=True, help="a run dir written by rocket-ctr train")
    parser.add_argument("--data", required=True, help="file, folder or glob")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.evaluation import evaluate
    from rocket_ctr.run_dir import restore_model, to_json

    model, spec, config = restore_model(args.run_dir)
    results = evaluate(model, args.data, spec, args.batch_size)
    metrics = {"mode": config.model.mode, "data": args.data}
    metrics.update({tower: {k: values[k] for k in ("auc", "gauc", "logloss")} for tower, values in results.items()})
    print(to_json(metrics))
    return 0
