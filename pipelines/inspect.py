"""``rocket-ctr inspect PATH``: stream a click log through the input pipeline and say what it read.

Every row goes through :func:`rocket_ctr.io.reader.make_dataset` exactly as training reads it, so a bad
file fails here with the same one-line message. The summary: files, rows, batches per padded
history width, CTR, history lengths (mean, max, share truncated to ``max_history``), distinct
users (exact below 8,192, else a K-minimum-values estimate, about 1% error) and rows/s.

``--fit-spec OUT.json`` then fits the spec's numeric features to the data (equal-mass bucket
boundaries for those declaring ``num_buckets``, mean and std for those with ``normalize``) and
writes the fitted spec there.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rocket_ctr.features.hashing import splitmix64

SPEC_NAME = "feature_spec.json"
SPEC_SEARCH_LEVELS = 2  # folders searched above the first data file's folder (see data.find_feature_spec_path)
SKETCH_SIZE = 8192


def add_parser(subparsers) -> None:
    """Registers the ``inspect`` sub-command."""
    parser = subparsers.add_parser(
        "inspect", help="stream a Parquet click log through the input pipeline and summarise it",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="Parquet file, folder (searched recursively) or glob")
    parser.add_argument("--spec", default=None,
                        help=f"FeatureSpec JSON (default: {SPEC_NAME} in the first data file's folder or up "
                             f"to {SPEC_SEARCH_LEVELS} above, as training finds it, else the reference schema)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per batch (default 1024)")
    parser.add_argument("--fit-spec", default=None, metavar="OUT.json",
                        help="also fit the spec's numeric features to the data (quantile boundaries for those "
                             "with num_buckets, mean/std for those with normalize) and write the fitted spec "
                             "to OUT.json (written only when the whole log reads cleanly)")
    parser.set_defaults(func=run)


def resolve_spec(path, spec_path=None):
    """(FeatureSpec, where it came from) for reading ``path``: explicit file, found file or defaults."""
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.io.log_gate import find_feature_spec_path

    if spec_path is None:
        spec_path = find_feature_spec_path(path)
        if spec_path is None:
            return FeatureSpec(), "reference-schema defaults"
    return FeatureSpec.load(spec_path), str(spec_path)


class DistinctCounter:
    """Distinct-value count in bounded memory: exact below ``k`` values, else a KMV estimate."""

    def __init__(self, k: int = SKETCH_SIZE):
        self.k = k
        self.smallest = np.empty(0, dtype=np.uint64)

    def add(self, ids: np.ndarray) -> None:
        if ids.dtype == object:  # strings (bytes): Python's hash is stable within one process
            ids = np.fromiter((hash(v) for v in ids), dtype=np.int64, count=len(ids))
        self.smallest = np.union1d(self.smallest, splitmix64(ids))[: self.k]

    @property
    def exact(self) -> bool:
        return len(self.smallest) < self.k

    def estimate(self) -> int:
        if self.exact:
            return len(self.smallest)
        return int(round((self.k - 1) / (float(self.smallest[-1]) / 2.0**64)))


def _raw_history_lengths(files: list[str], column: str, max_history: int) -> dict:
    """Longest raw history and rows longer than ``max_history`` (one pass over one list column)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    longest, truncated = 0, 0
    for batch in pads.dataset(files, format="parquet").to_batches(columns=[column]):
        if batch.num_rows:
            lengths = pc.list_value_length(batch.column(0))
            longest = max(longest, pc.max(lengths).as_py() or 0)
            truncated += pc.sum(pc.greater(lengths, max_history)).as_py() or 0
    return {"raw_max": int(longest), "truncated": int(truncated)}


def summarize(paths, spec=None, batch_size: int = 1024) -> dict:
    """Streams every row of ``paths`` through ``make_dataset`` and returns what it read.

    Returns:
        dict with ``files``, ``rows``, ``batches``, ``widths`` ({padded width: {"batches",
        "rows"}}), ``ctr``, ``hist_len_mean``/``hist_len_max`` (after truncation),
        ``hist_raw_max``, ``truncated_share``, ``distinct_users`` (+ ``distinct_users_exact``),
        ``seconds`` and ``rows_per_second`` of the stream.
    Raises:
        InputError: a bad path, file, column or value (the same messages as training).
    """
    from rocket_ctr.features.spec import HIST_LEN, FeatureSpec
    from rocket_ctr.io.log_gate import check_log
    from rocket_ctr.io.reader import make_dataset, surfacing_input_errors

    spec = spec or FeatureSpec()
    files = check_log(paths, spec).files
    history = spec.history_columns[0] if spec.history_columns else None
    rows = clicks = hist_sum = hist_max = 0
    widths: dict[int, dict[str, int]] = {}
    users = DistinctCounter()
    started = time.perf_counter()
    with surfacing_input_errors():
        for features, label in make_dataset(files, spec, batch_size=batch_size):
            n = int(label.shape[0])
            rows += n
            clicks += int(np.sum(label.numpy()))
            lengths = features[HIST_LEN].numpy()
            hist_sum += int(lengths.sum())
            hist_max = max(hist_max, int(lengths.max(initial=0)))
            width = int(features[history].shape[1]) if history else 0
            stats = widths.setdefault(width, {"batches": 0, "rows": 0})
            stats["batches"] += 1
            stats["rows"] += n
            users.add(features[spec.user_id].numpy())
    seconds = time.perf_counter() - started
    raw = _raw_history_lengths(files, history, spec.max_history) if history else {"raw_max": 0, "truncated": 0}
    return {
        "files": files, "rows": rows, "batch_size": batch_size,
        "batches": sum(w["batches"] for w in widths.values()),
        "widths": dict(sorted(widths.items())),
        "ctr": clicks / rows if rows else None,
        "max_history": spec.max_history,
        "hist_len_mean": hist_sum / rows if rows else 0.0, "hist_len_max": hist_max,
        "hist_raw_max": raw["raw_max"], "truncated_share": raw["truncated"] / rows if rows else 0.0,
        "distinct_users": users.estimate(), "distinct_users_exact": users.exact,
        "seconds": seconds, "rows_per_second": rows / seconds if seconds > 0 else float("inf"),
    }


def format_summary(summary: dict, spec_source: str | None = None) -> str:
    """The human-readable report of :func:`summarize`'s dict."""
    def line(name, value):
        return f"{name:<15}{value}"

    files = summary["files"]
    shown = files[0] if len(files) == 1 else f"{files[0]} ... {files[-1]}"
    out = []
    if spec_source:
        out.append(line("spec", spec_source))
    rows = summary["rows"]
    out += [line("files", f"{len(files)} ({shown})"),
            line("rows", f"{rows:,}"),
            line("batches", f"{summary['batches']:,} of up to {summary['batch_size']} rows")]
    for width, stats in summary["widths"].items():
        share = stats["rows"] / rows if rows else 0.0
        out.append(line(f"  width {width}", f"{stats['batches']:>8,} batches {stats['rows']:>12,} rows ({share:.1%})"))
    out += [line("ctr", f"{summary['ctr']:.4f}" if summary["ctr"] is not None else "n/a"),
            line("history", f"mean {summary['hist_len_mean']:.2f}, max {summary['hist_len_max']} steps kept "
                            f"(max_history {summary['max_history']}); longest raw {summary['hist_raw_max']}, "
                            f"{summary['truncated_share']:.2%} of rows truncated"),
            line("users", users_text(summary["distinct_users"], summary["distinct_users_exact"])),
            line("read", f"{rows:,} rows in {summary['seconds']:.2f} s = {summary['rows_per_second']:,.0f} rows/s")]
    return "\n".join(out)


def users_text(count: int, exact: bool) -> str:
    """The distinct-user line: exact, or an estimate that says it is one and how close it is."""
    if exact:
        return f"{count:,}"
    # a k-minimum-values sketch's relative standard error is 1/sqrt(k - 2)
    return f"about {count:,} (estimated from a sketch of {SKETCH_SIZE:,} ids, ±{100 / (SKETCH_SIZE - 2) ** 0.5:.1f} %)"


def fit_spec(paths, spec, out) -> list[str]:
    """Fits ``spec``'s numeric features to ``paths`` (:func:`rocket_ctr.features.fit.fit_numeric`),
    writes the fitted spec to ``out`` (atomically) and returns one report line per feature."""
    import os
    import tempfile
    from pathlib import Path

    from rocket_ctr.errors import InputError
    from rocket_ctr.features.fit import fit_numeric
    from rocket_ctr.io.log_gate import resolve_paths

    fitted, stats = fit_numeric(resolve_paths(paths), spec)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(handle)
        fitted.save(temporary)
        os.replace(temporary, out)
    except OSError as err:
        raise InputError(f"--fit-spec {out}: cannot write ({err.strerror})") from None
    lines = []
    for f in fitted.numeric_features:
        s = stats[f.name]
        what = [f"{len(f.boundaries)} boundaries" if f.boundaries else "", f"mean {f.mean:.4g} std {f.std:.4g}"
                if f.normalize else ""]
        lines.append(f"  {f.name:<13}{s['count']:,} values in [{s['min']:.4g}, {s['max']:.4g}]: "
                     + ", ".join(w for w in what if w))
    return [f"fitted spec    {out} ({len(lines)} numeric feature(s))"] + lines


def run(args: argparse.Namespace) -> int:
    """Entry point of ``rocket-ctr inspect``."""
    spec, source = resolve_spec(args.path, args.spec)
    summary = summarize(args.path, spec, batch_size=args.batch_size)
    print(format_summary(summary, source))
    if args.fit_spec:
        print("\n".join(fit_spec(args.path, spec, args.fit_spec)))
    return 0
