"""Negative downsampling, corrected: calibration on the full-rate test split of a generated log.

    .venv/bin/python benchmarks/bench_calibration.py [--rows 600000] [--rate 0.1] [--epochs 2]
        [--seeds 0] [--work-dir /tmp/rocket_calibration] [--table-only] [--no-calibrate-slope]
        [--calibration-knots K]

One generated log (``rocket-ctr generate --with-oracle``, test = the newest ``--test-fraction`` of
time, always at the full rate) and, from the same seed, its train split with ``--rate`` of the
negatives kept upstream (``generate --negative-rate``: the same rows, a subset). Runs:

* ``oracle``: the true click probability ``click_prob`` (the calibration noise floor of the split),
* ``full rate``: trained on every row,
* ``upstream r``: trained on the downsampled log (its feature spec records the rate),
* ``reader r``: trained on the full log with ``--negative-rate r`` (the reader keeps the negatives).

Each run is the library's ``Trainer`` with the defaults except ``--epochs`` and the rate (and
``--no-calibrate-intercept`` / ``--no-calibrate-slope``: ``training.calibrate_intercept`` /
``training.calibrate_slope`` off); its metrics are ``metrics.json``'s: the eval split's PCOC and
ECE (10 equal-mass bins) of the corrected probabilities after the refit on the validation rows
(Platt scaling: slope ``a`` and intercept ``b``), the fitted values and the PCOC / ECE without
them, and the uncorrected PCOC beside them. With a slope, the same model is also evaluated with
the intercept-only refit (``b`` alone fitted on the same rows, ``a`` = 1): the slope's own effect;
with isotonic maps (``training.calibration_knots``, ``--calibration-knots``), with Platt alone too
(the knots' own effect).
Each run is a recipe of ``benchmarks/recipes.py`` (family ``calibration``). Results are appended to
``WORK/results.jsonl`` run by run, each line with the resolved config it trained; a re-run skips the
runs whose config, seed, rows and test fraction are there and prints the table of the lines that
trained what their run resolves to today (the others are left out, with a note).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiment_results import append, finished, load, provenance, stored_key, today_key, unjoined_note
from recipes import recipe_key, resolve, rocket_config

FAMILY = "calibration"  # the recipes of benchmarks/recipes.py this script runs
TARGET = "corrected PCOC within 1 ± 0.02 and ECE <= 0.005 on the full-rate test split"


def generate_logs(work: Path, rows: int, rate: float, test_fraction: float, seed: int) -> dict:
    """The full-rate log and its downsampled twin (generated once, reused)."""
    from rocket_ctr.datagen.synthetic import generate

    logs = {"full": work / f"log_s{seed}_full", "sampled": work / f"log_s{seed}_r{rate}"}
    for name, rate_of_log in (("full", 1.0), ("sampled", rate)):
        params = logs[name] / "params.json"
        if params.exists() and json.loads(params.read_text()).get("complete") and \
                json.loads(params.read_text())["config"]["n_rows"] == rows:
            continue
        generate(logs[name], n_rows=rows, test_fraction=test_fraction, seed=seed, with_oracle=True,
                 negative_rate=rate_of_log)
    return logs


def run_oracle(test) -> dict:
    """Calibration of the true click probability on the test split."""
    import pyarrow.parquet as pq

    from rocket_ctr.calibration.measures import ece, pcoc
    from rocket_ctr.metrics.ranking import auc, gauc

    table = pq.read_table(test, columns=["user_id", "label", "click_prob"])
    y, p = table["label"].to_numpy(), table["click_prob"].to_numpy()
    return {"light": {"auc": auc(y, p), "gauc": gauc(table["user_id"].to_numpy(), y, p), "pcoc": pcoc(y, p),
                      "ece": ece(y, p)}, "test_rows": len(y), "test_ctr": float(y.mean())}


def run_training(log: Path, run_dir: Path, name: str, run: dict) -> dict:
    """Trains the recipe ``name`` (the defaults with its ``negative_rate``) with ``run``'s settings
    (``epochs``, ``seed``, ``calibrate_intercept``, ``calibrate_slope``, ``calibration_knots`` where
    given) and returns its eval metrics."""
    from rocket_ctr.train.trainer import Trainer

    config = rocket_config(FAMILY, name, **run)
    trainer = Trainer(run_dir, log / "train", log / "test", config, verbose=0)
    metrics = trainer.fit()
    keep = ("auc", "gauc", "logloss", "pcoc", "ece", "pcoc_uncorrected")
    per_epoch = [{"epoch": r["epoch"], **{k: r["eval"]["light"][k] for k in ("gauc", "pcoc", "ece")}}
                 for r in metrics["history"]]
    before = metrics.get("eval_without_intercept", {})
    return {**{t: {k: metrics[t][k] for k in keep if k in metrics[t]} for t in ("light", "booster")},
            "intercept": metrics.get("intercept"), "slope": metrics.get("slope"),
            "knots": len(next(iter(metrics["knots"].values()))["x"]) if metrics.get("knots") else None,
            "platt_only": platt_only(trainer, log) if trainer.model.knots else None,
            "intercept_only": intercept_only(trainer, log) if trainer.model.slopes else None,
            "without_intercept": {t: {k: v[k] for k in ("pcoc", "ece")} for t, v in before.items()},
            "kept_epoch": metrics.get("best_epoch", metrics.get("epoch")), "light_per_epoch": per_epoch,
            "negative_rate": trainer.model.negative_rate, "train_rows_read": trainer.reader.num_rows}


def platt_only(trainer, log: Path) -> dict:
    """The trained model evaluated on the test split with its isotonic maps set to the identity
    (Platt alone; they stay so): ``{tower: {"pcoc", "ece"}}``."""
    from rocket_ctr.calibration.isotonic import identity_knots
    from rocket_ctr.train.evaluation import evaluate

    for x, y in trainer.model.knots.values():
        x.assign(identity_knots(x.shape[0]))
        y.assign(identity_knots(x.shape[0]))
    return {t: {"pcoc": v["pcoc"], "ece": v["ece"]} for t, v in evaluate(trainer.model, log / "test",
                                                                         trainer.spec).items()}


def intercept_only(trainer, log: Path) -> dict:
    """The trained model evaluated on the test split with the intercept-only refit (``a`` = 1, ``b``
    fitted alone on the same validation rows): ``{tower: {"pcoc", "ece", "intercept"}}``."""
    from rocket_ctr.calibration.intercept import fit_towers
    from rocket_ctr.train.evaluation import evaluate, validation_logits

    model, spec = trainer.model, trainer.spec
    logits, labels, weights = validation_logits(model, log / "train", spec, (trainer.holdout, "validation"),
                                                spec.negative_rate)
    for tower, b in fit_towers(logits, labels, weights).items():
        model.slopes[tower].assign(1.0)
        model.intercepts[tower].assign(0.0 if b is None else b)
    results = evaluate(model, log / "test", spec)
    return {t: {"pcoc": v["pcoc"], "ece": v["ece"], "intercept": model.intercept_values()[t]}
            for t, v in results.items()}


def table(records) -> str:
    """Markdown, one row per run and tower (* = the epoch the run kept: early stopping's best), of the
    lines whose stored config is what their run resolves to today."""
    records = list(records)
    note = unjoined_note(records)
    records = [r for r in records if stored_key(r) is not None and stored_key(r) == today_key(r)]
    lines = ["| run | rows | tower | AUC | GAUC | PCOC (corrected) | ECE | knots | slope a | intercept b "
             "| PCOC / ECE Platt only | PCOC / ECE intercept only | PCOC / ECE without a, b | PCOC uncorrected "
             "| light PCOC / ECE by epoch (without a, b) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]

    def cell(value, digits):
        return "–" if value is None else f"{value:.{digits}f}"

    for r in records:
        for tower in ("light", "booster"):
            if tower in r:
                m = r[tower]
                epochs = "; ".join(f"{e['epoch']}{'*' if e['epoch'] == r.get('kept_epoch') else ''}: "
                                   f"{e['pcoc']:.3f} / {e['ece']:.4f}" for e in r.get("light_per_epoch", []))
                b = (r.get("intercept") or {}).get(tower)
                without = (r.get("without_intercept") or {}).get(tower)
                before = f"{without['pcoc']:.3f} / {without['ece']:.4f}" if without else "–"
                a = (r.get("slope") or {}).get(tower)
                only = (r.get("intercept_only") or {}).get(tower)
                only = f"{only['pcoc']:.3f} / {only['ece']:.4f} (b {only['intercept']:+.3f})" if only else "–"
                platt = (r.get("platt_only") or {}).get(tower)
                platt = f"{platt['pcoc']:.3f} / {platt['ece']:.4f}" if platt else "–"
                lines.append(f"| {r['run']} (seed {r['seed']}) | {r['rows']:,} | {tower} | {cell(m.get('auc'), 4)} | "
                             f"{cell(m.get('gauc'), 4)} | {cell(m.get('pcoc'), 3)} | {cell(m.get('ece'), 4)} | "
                             f"{r.get('knots') or '–'} | {cell(a, 3)} | {cell(b, 3)} | {platt} | {only} | {before} | "
                             f"{cell(m.get('pcoc_uncorrected'), 3)} | "
                             f"{epochs if tower == 'light' else ''} |")
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=600_000, help="generated impressions (train + test)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--rate", type=float, default=0.1, help="share of negatives kept")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--runs", nargs="+", default=["oracle", "full rate", "upstream", "reader"],
                        choices=["oracle", "full rate", "upstream", "reader"])
    parser.add_argument("--work-dir", default="/tmp/rocket_calibration")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--no-calibrate-intercept", dest="refit", action="store_false",
                        help="train without the intercept refit (training.calibrate_intercept off)")
    parser.add_argument("--no-calibrate-slope", dest="slope", action="store_false",
                        help="refit the intercept alone (training.calibrate_slope off)")
    parser.add_argument("--calibration-knots", dest="knots", type=int, default=None,
                        help="knots of the isotonic maps (training.calibration_knots; default: the config's)")
    args = parser.parse_args()

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.jsonl"
    done = load(results_path)
    for seed in ([] if args.table_only else args.seeds):
        logs = generate_logs(work, args.rows, args.rate, args.test_fraction, seed)
        for run in args.runs:
            name = {"upstream": f"upstream r={args.rate}", "reader": f"reader r={args.rate}"}.get(run, run)
            settings = {"epochs": args.epochs, "seed": seed, "calibrate_intercept": args.refit,
                        "calibrate_slope": args.slope,
                        **({} if args.knots is None else {"calibration_knots": args.knots})}
            where = {"rows": args.rows, "test_fraction": args.test_fraction}
            if finished(done.values(), FAMILY, name, where, **settings):
                continue
            key = f"{name}|{seed}|{args.rows}|{args.test_fraction}|{args.epochs}"
            key += ("" if args.refit else "|no-refit") + ("" if args.slope or not args.refit else "|no-slope")
            key += "" if args.knots is None else f"|knots{args.knots}"
            started = time.perf_counter()
            if run == "oracle":
                data = logs["full"] / "test"
                record = run_oracle(data)
            else:
                data = logs["sampled"] if run == "upstream" else logs["full"]
                run_dir = work / "runs" / key.replace("|", "_").replace(" ", "_").replace("=", "")
                record = run_training(data, run_dir, name, settings)
            record.update(provenance(FAMILY, name, data, **settings))
            record.update(key=f"{key}|{recipe_key(resolve(FAMILY, name, **settings))}", run=name, seed=seed,
                          rows=args.rows, test_fraction=args.test_fraction, epochs=args.epochs,
                          seconds=round(time.perf_counter() - started, 1))
            append(results_path, done, record)
            print(f"{name} seed {seed}: light PCOC {record['light']['pcoc']:.3f} ECE {record['light']['ece']:.4f} "
                  f"({record['seconds']} s)", flush=True)
    print(f"target: {TARGET}")
    print(table(done.values()))
    print(f"results: {results_path}")


if __name__ == "__main__":
    main()
