"""The latency/quality frontier: every light option, the booster and DeepCTR's DIN on one
table and one PNG, p50 / p99 per request against test GAUC.

    .venv/bin/python benchmarks/bench_frontier.py --results /tmp/rl6/results.jsonl /tmp/rl7/results.jsonl
    .venv/bin/python benchmarks/bench_frontier.py --requests 100 --out /tmp/frontier   # quick
    .venv/bin/python benchmarks/bench_frontier.py --results ... --latency-from OUT/frontier.json   # re-join only

Latency, in one process on one machine: each point is built (``RocketModel(FeatureSpec(),
RocketConfig(<the point's changes>))``, untrained: weights do not change the arithmetic), exported
with ``rocket_ctr.export.writer.export_light`` (``--xla``, the default, as ``rocket-ctr export``; the
booster with ``tower="booster"``, for benchmarking only), loaded back with
``tf.saved_model.load`` and its ``serving_default`` called with one request of 1 user x
``--candidates`` (200) candidates x ``--history`` (50) steps. DeepCTR's DIN is its SavedModel in
the DeepCTR venv (``benchmarks/deepctr_din_serving.py --serve-stdin``, default vocabularies, the
request as 200 rows with the user repeated), driven by ``bench_serving_latency.start_deepctr``.
The ``call floor`` point is a SavedModel with the same signature that returns N zeros: what any
call with this request costs in process before the first multiply (the "p50 − call floor" column
is each point's own graph). Every case is measured in ``--rounds`` interleaved chunks with the
order rotated every round (``bench_serving_latency.measure``), so background load falls on all
alike: compare ratios, not milliseconds, across runs.

Quality, from ``experiment_real_logs.py`` results files (``--results``, JSON lines, merged; read
only): for each point the lines whose stored config is what ``--base-recipe`` (the light tower
trained alone; default ``validation auto + base mode`` = ``--mode base`` defaults) or
``--rocket-recipe`` (trained with the booster; default ``validation auto`` = the defaults) plus the
point's change (e.g. ``validation auto + base mode + light mean``) resolves to today
(``benchmarks/recipes.py``, family ``real logs``): joined by the resolved config, not by spelling
(``base`` and ``validation auto + base mode + light dot`` are one configuration), and never by name
alone: a line trained under other defaults counts only where a recipe resolves to its config, and a
line without a stored config is not joined (the script says how many it left out). The booster's
GAUC is the booster of the rocket recipe's runs with the dot light tower; DeepCTR DIN's is the
``DeepCTR DIN`` recipe (trained alone). Cells: mean ± std over seeds (n); ``–`` where no run matched.

Outputs: the Markdown table (stdout and ``OUT/frontier.md``), ``OUT/frontier.json`` (latency
summaries, per-log quality with the seeds, settings) and ``OUT/frontier.png``: p50 (x, log scale)
against GAUC (y), one panel per log, hollow markers base-trained, filled rocket-trained.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from experiment_results import stored_key, unjoined_note  # noqa: E402 (benchmarks/ on the path first)
from recipes import DEEPCTR_DIN, recipe, recipe_key, resolve  # noqa: E402

# (point, change of recipes.REAL_LOGS_CHANGES added to the recipes ("" = none), tower)
POINTS = (
    ("light shared", "light shared", "light"),        # the booster's DIN attention (the paper-faithful ablation)
    ("light din 32-16", "light din 32-16", "light"),
    ("light dot", "light dot", "light"),
    ("light dot raw", "light dot raw", "light"),
    ("light mean", "light mean", "light"),
    ("booster", "light dot", "booster"),  # the booster of the default recipe (its light tower: dot)
    # the other booster options (docs/results/boosters.md): their serving cost against the light tower's
    # the light tower of a model with the 7-layer DIN booster: the same served graph as "light dot"
    ("light dot, 7-layer DIN booster's", "light dot + 7-layer din booster", "light"),
    ("booster, 7-layer DIN", "light dot + 7-layer din booster", "booster"),
    ("booster, dot + crosses", "light dot + dot cross booster", "booster"),
    ("booster, wide DIN + dot", "light dot + wide din+dot booster", "booster"),
)
DEEPCTR = DEEPCTR_DIN
FAMILY = "real logs"  # the recipes of experiment_real_logs.py
FLOOR = "call floor"  # a SavedModel with the light signature that does no arithmetic: the cost of any call


# ----- quality -----------------------------------------------------------------------------------
def read_results(*paths: Path) -> list:
    """The records of results files being appended to (a partial last line is skipped; a key
    recorded twice counts once, the last; files later in ``paths`` win)."""
    records = {}
    for path in paths:
        if not path.is_file():
            continue
        for i, line in enumerate(path.read_text().splitlines()):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[record.get("key", f"{path}:{i}")] = record
    return list(records.values())


def recipe_variant(start: str, change: str) -> str:
    return " + ".join(part for part in (start, change) if part)


def quality(records: list, epochs: int, base_recipe: str, rocket_recipe: str) -> dict:
    """{point: {log: {"base": [gauc per seed], "rocket": [...], "base_seeds": [...], ...}}}: the lines
    whose stored config is what each point's recipe resolves to today (lines without one: none)."""
    records = [r for r in records if r.get("epochs") == epochs]
    stored = [(stored_key(r), r) for r in records]
    out = {}

    def collect(point, which, want, tower="light"):
        for key, r in stored:
            if key == want and (r.get(tower) or {}).get("gauc") is not None:
                cell = out.setdefault(point, {}).setdefault(r["log"], {})
                cell.setdefault(which, []).append(r[tower]["gauc"])
                cell.setdefault(f"{which}_seeds", []).append(r.get("seed"))
                cell.setdefault(f"{which}_variants", [])
                if r["variant"] not in cell[f"{which}_variants"]:
                    cell[f"{which}_variants"].append(r["variant"])

    def key_of(name):
        try:
            return recipe_key(resolve(FAMILY, name, epochs=epochs))
        except (KeyError, ValueError) as err:
            raise SystemExit(f"not a recipe of benchmarks/recipes.py ({FAMILY}): {name!r}: {err}") from None

    for point, change, tower in POINTS:
        for which, start in (("base", base_recipe), ("rocket", rocket_recipe)):
            if tower == "booster" and which == "base":
                continue  # no run trains the booster alone
            collect(point, which, key_of(recipe_variant(start, change)), tower)
    collect(DEEPCTR, "base", key_of(DEEPCTR_DIN))
    return out


def cell_text(values: list | None) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f} ({len(values)})"


# ----- latency -----------------------------------------------------------------------------------
def export_points(work: Path, jit: bool, names: list, log=print) -> dict:
    """{point: SavedModel version dir}: each light option's light tower, the booster."""
    import tensorflow as tf

    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.features.signatures import example_rows
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.model.rocket import RocketModel

    spec, out = FeatureSpec(), {}
    for point, change, tower in POINTS:
        if point not in names:
            continue
        config = RocketConfig().replace(recipe(FAMILY, change).config if change else {})
        tf.keras.utils.set_random_seed(0)
        model = RocketModel(spec, config)
        model(example_rows(spec), training=False)
        started = time.perf_counter()
        result = export_light(model, spec, work / point.replace(" ", "_"), 1, tower=tower, jit_compile=jit)
        log(f"  exported {point} ({tower} tower{', ' + change if change else ''}) in "
            f"{time.perf_counter() - started:.0f} s: {result.path} (verified, max |diff| {result.max_abs_diff:.1e})")
        out[point] = result.path
    return out


def export_floor(work: Path) -> Path:
    """A SavedModel with the light export's ``serving_default`` signature whose graph only returns
    N zeros: what a call of any export with this request costs in process before any arithmetic
    (the signature wrapper, the tensors in and out)."""
    import tensorflow as tf

    from rocket_ctr.features.signatures import OUTPUT, candidate_columns, request_signature
    from rocket_ctr.features.spec import FeatureSpec

    spec = FeatureSpec()
    first = candidate_columns(spec)[0]
    module = tf.Module()
    module.serving_default = tf.function(lambda inputs: {OUTPUT: tf.zeros(tf.shape(inputs[first])[:1])},
                                         input_signature=[request_signature(spec)])
    path = work / "floor" / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serving_default})
    return path


def frontier_rows(latency: dict, qualities: dict, logs: list) -> list:
    booster = latency.get("booster", {}).get("p50_ms")
    din = latency.get(DEEPCTR, {}).get("p50_ms")
    floor = latency.get(FLOOR, {}).get("p50_ms")
    rows = []
    for point in [p for p, _, _ in POINTS] + [DEEPCTR, FLOOR]:
        if point not in latency:
            continue
        p50, p99 = latency[point]["p50_ms"], latency[point]["p99_ms"]
        above = p50 - floor if floor is not None and point != FLOOR else None
        row = {"point": point, "p50_ms": p50, "p99_ms": p99,
               "p50_over_booster": p50 / booster if booster else None,
               "din_over_p50": din / p50 if din else None,
               "above_floor_ms": above, "gauc": {}}
        for log_name in logs:
            cell = qualities.get(point, {}).get(log_name, {})
            row["gauc"][log_name] = {which: cell.get(which, []) for which in ("base", "rocket")}
        rows.append(row)
    return rows


def markdown(rows: list, logs: list, settings: dict) -> str:
    s = settings
    head = (f"1 user x {s['candidates']} candidates x {s['history']} history steps, in process, "
            f"{s['requests']} requests per point in {s['rounds']} interleaved rounds, "
            f"XLA {'on' if s['xla'] else 'off'} "
            f"(DeepCTR DIN: its own SavedModel, no XLA), {s['cpus']} CPU cores, load average at start "
            f"{s['load_average']:.1f}; GAUC: test, {s['epochs']} epochs, mean ± std (n seeds) from {s['results']}; "
            f"base = `{s['base_recipe']}`, rocket = `{s['rocket_recipe']}` (+ the point's change)")
    cols = ["point", "p50 ms", "p99 ms", "p50 − call floor", "p50 / booster", "DIN p50 / p50"]
    for log_name in logs:
        cols += [f"{log_name} base", f"{log_name} rocket"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "| --- | " + " | ".join(["---:"] * (len(cols) - 1)) + " |"]
    for r in rows:
        ratio = f"{r['p50_over_booster']:.2f}" if r["p50_over_booster"] is not None else "–"
        speed = f"{r['din_over_p50']:.1f}x" if r["din_over_p50"] is not None else "–"
        above = f"{r['above_floor_ms']:.2f}" if r.get("above_floor_ms") is not None else "–"
        cells = [r["point"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", above, ratio, speed]
        for log_name in logs:
            cells += [cell_text(r["gauc"][log_name]["base"]), cell_text(r["gauc"][log_name]["rocket"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list, logs: list, path: Path) -> bool:
    """p50 (log x) vs GAUC, one panel per log; False when there is nothing to plot."""
    import matplotlib
    import matplotlib.transforms

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["point"] != FLOOR]  # no model, no GAUC: the table says what it cost
    logs = [lg for lg in logs if any(r["gauc"][lg]["base"] or r["gauc"][lg]["rocket"] for r in rows)]
    if not logs:
        return False
    fig, axes = plt.subplots(1, len(logs), figsize=(5.2 * len(logs), 4.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, log_name in zip(axes[0], logs):
        for i, r in enumerate(rows):
            color, marker = colors[i % len(colors)], "*" if r["point"] == DEEPCTR else "o"
            shown = []
            for which, face in (("base", "none"), ("rocket", color)):
                values = r["gauc"][log_name][which]
                if not values:
                    continue
                mean = statistics.mean(values)
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                ax.errorbar([r["p50_ms"]], [mean], yerr=[std], fmt=marker, color=color, mfc=face, ms=9 if
                            marker == "*" else 7, capsize=3, label=f"{r['point']} ({which}, n={len(values)})")
                shown.append(mean)
            if len(shown) == 2:
                ax.plot([r["p50_ms"]] * 2, shown, color=color, lw=0.8, alpha=0.6)
            if not shown:  # latency only: a tick on the bottom edge, so every point is on the x axis
                edge = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
                ax.plot([r["p50_ms"]], [0.03], marker="|", ms=14, mew=2, color=color, transform=edge,
                        label=f"{r['point']} (p50 only, no GAUC yet)")
        ax.set_xscale("log")
        ticks = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(ticks)
        ax.xaxis.set_minor_formatter(ticks)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("p50 per request, ms (log scale)")
        ax.set_ylabel("test GAUC")
        ax.set_title(log_name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle("latency / quality frontier: hollow = trained alone (base), filled = rocket-trained, "
                 "ticks on the bottom edge = latency only", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, nargs="+", default=[Path("/tmp/rl2/results.jsonl")],
                        help="experiment_real_logs.py results files, merged (read only; default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="quality of runs of this many epochs (default: 3)")
    parser.add_argument("--base-recipe", default="validation auto + base mode",
                        help="variant of the light tower trained alone, before the point's change")
    parser.add_argument("--rocket-recipe", default="validation auto",
                        help="variant of the rocket-trained light tower, before the point's change")
    parser.add_argument("--points", nargs="+", default=[p for p, _, _ in POINTS],
                        choices=[p for p, _, _ in POINTS], help="which rocket_ctr points (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rocket_frontier"), help="PNG, JSON and Markdown")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per point (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved chunks per point (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per point (default: %(default)s)")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True,
                        help="XLA exports (default, as rocket-ctr export); --no-xla: without")
    parser.add_argument("--deepctr-venv", type=Path, default=Path("/tmp/deepctr-venv"))
    parser.add_argument("--deepctr-fit-steps", type=int, default=0, help="unused without a log (kept for the helper)")
    parser.add_argument("--skip-deepctr", action="store_true")
    parser.add_argument("--latency-from", type=Path, default=None,
                        help="reuse the latency figures of an earlier run's frontier.json (measure nothing): "
                             "the table and PNG again with the results file as it is now")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.candidates < 1 or args.history < 1 or args.warmup < 0:
        parser.error("--requests, --candidates, --history must be >= 1 and --warmup >= 0")

    command = "TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_frontier.py " + shlex.join(sys.argv[1:])
    cpus = len(os.sched_getaffinity(0))
    load_average = os.getloadavg()[0]
    print(f"CPU cores: {cpus} (load average {load_average:.1f}: other processes share them)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    from experiment_real_logs import LOGS

    records = read_results(*args.results)
    qualities = quality(records, args.epochs, args.base_recipe, args.rocket_recipe)
    logs = [lg for lg in LOGS if any(r.get("log") == lg for r in records)]
    logs += sorted({r["log"] for r in records if r.get("log") and r["log"] not in logs})
    print(f"{len(records)} result records in {', '.join(map(str, args.results))} (logs: {', '.join(logs) or 'none'})",
          flush=True)
    note = unjoined_note(r for r in records if r.get("epochs") == args.epochs)
    if note:
        print(note, flush=True)

    if args.latency_from is not None:
        earlier = json.loads(args.latency_from.read_text())
        latency, deepctr_info, deepctr_skipped = earlier["latency"], earlier["deepctr"], earlier["deepctr_skipped"]
        settings = {**earlier["settings"], "results": " ".join(map(str, args.results)), "epochs": args.epochs,
                    "base_recipe": args.base_recipe, "rocket_recipe": args.rocket_recipe,
                    "latency_from": str(args.latency_from)}
        return _report(args, latency, qualities, logs, settings, deepctr_info, deepctr_skipped, command)

    import tensorflow as tf
    from bench_serving_latency import Case, measure, start_deepctr, summary

    from rocket_ctr.serving.latency import inprocess_case

    deepctr_info, deepctr_skipped = None, None
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rocket-frontier-")))
        print(f"building and exporting {len(args.points)} points (XLA {'on' if args.xla else 'off'}) ...", flush=True)
        exports = export_points(work, args.xla, args.points)
        n, history = args.candidates, args.history
        exports[FLOOR] = export_floor(work)
        cases = [Case("in-process", point, inprocess_case(path, history)(n)) for point, path in exports.items()]
        if args.skip_deepctr:
            deepctr_skipped = "--skip-deepctr"
        else:
            case, deepctr_info, deepctr_skipped = start_deepctr(args, stack, None)
            if case is not None:
                case.model = DEEPCTR
                cases.append(case)
            else:
                print(f"DeepCTR DIN not measured: {deepctr_skipped}", flush=True)
        print(f"measuring {len(cases)} points x {args.requests} requests in {args.rounds} interleaved rounds ...",
              flush=True)
        measure(cases, args.requests, args.rounds, args.warmup)
    latency = {case.model: summary(case) for case in cases}

    settings = dict(candidates=args.candidates, history=args.history, requests=args.requests, rounds=args.rounds,
                    warmup=args.warmup, xla=args.xla, cpus=cpus, load_average=load_average,
                    tensorflow=tf.__version__, results=" ".join(map(str, args.results)), epochs=args.epochs,
                    base_recipe=args.base_recipe, rocket_recipe=args.rocket_recipe)
    return _report(args, latency, qualities, logs, settings, deepctr_info, deepctr_skipped, command)


def _report(args, latency, qualities, logs, settings, deepctr_info, deepctr_skipped, command) -> int:
    """The table, JSON and PNG of measured latency joined with the quality records."""
    rows = frontier_rows(latency, qualities, logs)
    table = markdown(rows, logs, settings)
    print("\n" + table)
    (args.out / "frontier.md").write_text(table + f"\n\ncommand: `{command}`\n")
    report = {"settings": settings, "rows": rows, "latency": latency, "quality": qualities,
              "deepctr": deepctr_info, "deepctr_skipped": deepctr_skipped, "command": command}
    (args.out / "frontier.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    png = args.out / "frontier.png"
    wrote = plot(rows, logs, png)
    print(f"\ncommand: {command}\nwrote {args.out / 'frontier.md'}, {args.out / 'frontier.json'}"
          + (f", {png}" if wrote else " (no GAUC records matched: no PNG)"))
    if deepctr_skipped:
        print(f"(DeepCTR DIN not measured: {deepctr_skipped.splitlines()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
