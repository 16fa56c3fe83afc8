"""``rocket-ctr generate``: write a synthetic click log (reference schema) as time-split Parquet."""
from __future__ import annotations

import argparse

from rocket_ctr.datagen.synthetic import GeneratorConfig, generate

_DEFAULTS = GeneratorConfig()
# generator parameter -> flag: the CLI shows the library's FieldErrors with what the user typed
# the generator's fields whose flag is not their name; the CLI names every other field by the option
# of the same name
FIELD_FLAGS = {"n_rows": "--rows", "n_users": "--users", "n_items": "--items", "n_cates": "--cates",
               "n_brands": "--brands"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``generate`` sub-command."""
    parser = subparsers.add_parser(
        "generate", help="write a synthetic click log with learnable structure",
        description="Writes OUT/train/ and OUT/test/ Parquet parts (test = the last --test-fraction "
                    "of time), OUT/params.json and OUT/feature_spec.json. Same seed, same data.")
    add = parser.add_argument
    add("--out", required=True, metavar="DIR", help="output folder (a previous log there is replaced)")
    add("--rows", type=int, default=_DEFAULTS.n_rows, help="impressions in total (default: %(default)s)")
    add("--users", type=int, default=_DEFAULTS.n_users, help="distinct users (default: %(default)s)")
    add("--items", type=int, default=_DEFAULTS.n_items, help="distinct items (default: %(default)s)")
    add("--cates", type=int, default=_DEFAULTS.n_cates, help="distinct categories (default: %(default)s)")
    add("--max-history", type=int, default=_DEFAULTS.max_history,
        help="longest behaviour history (default: %(default)s)")
    add("--base-ctr", type=float, default=_DEFAULTS.base_ctr,
        help="mean click probability, in (0, 1) (default: %(default)s)")
    add("--test-fraction", type=float, default=_DEFAULTS.test_fraction,
        help="last fraction of time written to test/ (default: %(default)s)")
    add("--negative-rate", type=float, default=_DEFAULTS.negative_rate,
        help="keep each negative of train/ with this probability, every click (a log downsampled upstream; "
             "feature_spec.json records it, test/ stays at the full rate) (default: %(default)s)")
    add("--seed", type=int, default=_DEFAULTS.seed, help="random seed (default: %(default)s)")
    add("--cross-strength", type=float, default=_DEFAULTS.cross_strength,
        help="logit std of a high-order (item, occupation, gender) interaction where a bigger "
             "tower has the edge; 0 = off (default: %(default)s)")
    add("--feature-strength", type=float, default=_DEFAULTS.feature_strength,
        help="also write a numeric column (price, some missing) and a multi-hot column (tags) carrying this "
             "logit std of click signal each, declared in feature_spec.json; 0 = neither (default: %(default)s)")
    add("--brand-strength", type=float, default=_DEFAULTS.brand_strength,
        help="also write a second behaviour sequence (brand_id, hist_brand_id: the brands the user followed) "
             "carrying this logit std of click signal, declared in feature_spec.json as the sequence group "
             "'brand' with its own attention; 0 = none (default: %(default)s)")
    add("--brands", type=int, default=_DEFAULTS.n_brands,
        help="distinct brands with --brand-strength (default: %(default)s)")
    add("--days", type=int, default=0,
        help="split by day instead: the log spans N days, written to OUT/day-01/ ... OUT/day-N/ (full rate, "
             "no test split; interests drift from day to day) (default: %(default)s = train/test)")
    add("--with-oracle", action=argparse.BooleanOptionalAction, default=False,
        help="also write click_prob, the true click probability of each row")
    add("--rows-per-file", type=int, default=1_000_000,
        help="rows per Parquet part file (default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def field_flags() -> dict[str, str]:
    """How this command names the generator's fields in error messages: its flags."""
    return FIELD_FLAGS


def run(args: argparse.Namespace) -> int:
    """Generates the log described by ``args`` and prints where everything went."""
    summary = generate(
        args.out, n_rows=args.rows, n_users=args.users, n_items=args.items, n_cates=args.cates,
        max_history=args.max_history, base_ctr=args.base_ctr, test_fraction=args.test_fraction, seed=args.seed,
        negative_rate=args.negative_rate,
        cross_strength=args.cross_strength, feature_strength=args.feature_strength, with_oracle=args.with_oracle,
        brand_strength=args.brand_strength, n_brands=args.brands,
        rows_per_file=args.rows_per_file,
        days=args.days)
    rows, ctr = summary["rows"], summary["ctr"]
    if args.days:
        print(f"generated {sum(rows.values()):,} rows over {args.days} days in {summary['seconds']:.1f} s: "
              f"realised CTR {ctr['all']:.4f} (target {args.base_ctr})")
        for split in summary["splits"]:
            print(f"  {split + ':':<14}{summary['out_dir']}/{split}/  ({rows[split]:,} rows)")
        print(f"  {'params:':<14}{summary['params']}")
        print(f"  {'feature spec:':<14}{summary['feature_spec']}")
        return 0
    test_ctr = f"{ctr['test']:.4f}" if ctr["test"] is not None else "-"
    print(f"generated {rows['train'] + rows['test']:,} rows in {summary['seconds']:.1f} s: "
          f"realised CTR {ctr['all']:.4f} (train {ctr['train']:.4f}, test {test_ctr}; target {args.base_ctr})")
    for split in ("train", "test"):
        n_files = len(summary[f"{split}_files"])
        print(f"  {split + ':':<14}{summary['out_dir']}/{split}/  "
              f"({rows[split]:,} rows, {n_files} file{'s' * (n_files != 1)})")
    print(f"  {'params:':<14}{summary['params']}")
    print(f"  {'feature spec:':<14}{summary['feature_spec']}")
    return 0
