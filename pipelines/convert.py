"""rocket-ctr convert: public click logs -> our Parquet click-log schema + feature_spec.json.

    rocket-ctr convert amazon reviews_Electronics_5.json.gz meta_Electronics.json.gz --out data/amazon
    rocket-ctr convert taobao-ad raw_sample.csv ad_feature.csv user_profile.csv behavior_log.csv --out data/taobao
    rocket-ctr convert movielens ml-1m/ --out data/ml-1m
"""
from __future__ import annotations

import argparse
import importlib
import sys

# dataset -> converter module of rocket_ctr.datasets (each has convert(paths, out, ...)).
CONVERTERS = {"amazon": "amazon", "taobao-ad": "taobao", "movielens": "movielens"}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``convert`` sub-command."""
    parser = subparsers.add_parser(
        "convert", help="convert a public click log (Amazon, Taobao ads, MovieLens) to Parquet",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(CONVERTERS), help="which public data set RAW holds")
    parser.add_argument("raw", nargs="+", metavar="RAW", help="the downloaded files, or the folder holding them")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (train/, test/, feature_spec.json, convert_summary.json)")
    parser.add_argument("--max-history", type=_positive, default=50, metavar="N",
                        help="longest behaviour history kept, newest steps (default: 50)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of negative sampling and train-row shuffling (default: 0)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the converter of ``args.dataset`` and prints where the output went."""
    module = importlib.import_module(f"rocket_ctr.datasets.{CONVERTERS[args.dataset]}")
    summary = module.convert(args.raw, args.out, max_history=args.max_history, seed=args.seed,
                             progress=lambda message: print(message, file=sys.stderr, flush=True))
    rows = ", ".join(f"{split} {info['rows']:,} rows (CTR {info['ctr'] or 0:.4f})"
                     for split, info in summary["splits"].items())
    print(f"wrote {args.out}: {rows}; {args.out}/feature_spec.json, {args.out}/convert_summary.json")
    return 0
