"""``rocket-ctr evaluate``: the metrics JSON of a trained run on other data (ranking and calibration)."""
from __future__ import annotations

REPORTED = ("auc", "gauc", "logloss", "pcoc", "ece", "pcoc_uncorrected")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="AUC/GAUC/logloss/PCOC/ECE of a trained run on a Parquet log",
                                   description=__doc__)
    parser.add_argument("--run-dir", required=True, help="a run dir written by rocket-ctr train")
    parser.add_argument("--data", required=True, help="file, folder or glob")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--baseline", metavar="OTHER_RUN",
                        help="another run dir evaluated on the same data: adds RelaImpr (DIN's relative "
                             "improvement, on GAUC) of each tower over the baseline's same tower, else its light one")
    parser.add_argument("--negative-rate", type=float, default=1.0,
                        help="share of negatives --data kept if it was downsampled: each negative then counts "
                             "1/rate, so the metrics estimate the full log's (default: %(default)s)")
    parser.add_argument("--plots", metavar="DIR", help="also write reliability_<tower>.png into DIR")
    parser.set_defaults(func=run)


def _metrics(run_dir, data, batch_size: int, negative_rate: float) -> tuple[dict, dict]:
    """(config, full evaluation result) of one run dir on ``data``."""
    from rocket_ctr.train.evaluation import evaluate
    from rocket_ctr.train.run_dir import restore_model

    model, spec, config = restore_model(run_dir)
    return config, evaluate(model, data, spec, batch_size, negative_rate=negative_rate)


def run(args) -> int:
    from pathlib import Path

    from rocket_ctr.calibration.measures import check_rate, relaimpr
    from rocket_ctr.calibration.reliability_plot import plot_towers
    from rocket_ctr.errors import InputError
    from rocket_ctr.train.run_dir import to_json

    try:
        check_rate(args.negative_rate, "--negative-rate")
    except ValueError as err:
        raise InputError(str(err)) from None
    config, results = _metrics(args.run_dir, args.data, args.batch_size, args.negative_rate)
    metrics = {"mode": config.model.mode, "data": args.data}
    metrics.update({tower: {k: values[k] for k in REPORTED if k in values} for tower, values in results.items()})
    if args.baseline:
        base_config, base = _metrics(args.baseline, args.data, args.batch_size, args.negative_rate)
        metrics["baseline"] = {"run_dir": args.baseline, "mode": base_config.model.mode,
                               **{t: {k: v[k] for k in ("auc", "gauc")} for t, v in base.items()}}
        for tower in results:
            against = tower if tower in base else "light" if "light" in base else next(iter(base))
            metrics[tower]["relaimpr_gauc_percent"] = relaimpr(results[tower]["gauc"], base[against]["gauc"])
            metrics[tower]["relaimpr_against"] = against
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        metrics["plots"] = [str(p) for p in plot_towers(results, args.plots)]
    print(to_json(metrics))
    return 0
