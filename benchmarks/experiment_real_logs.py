"""What each modelling choice costs on the real logs, beside DeepCTR's DIN: logs × variants × seeds.

    .venv/bin/python benchmarks/experiment_real_logs.py [--logs beauty toys yelp ml_time ml_user_tail] [--seeds 0 1 2]
        [--variants defaults ...] [--din] [--epochs 3] [--work-dir /tmp/rocket_real_logs]

Logs: the five real logs of ``--data-root`` (``../shared/data``): three leave-one-out logs
(beauty, toys, yelp: train.parquet = every event before each user's last, test.parquet = each
user's last positive and its negative) and one time-ordered log with real timestamps in two test
protocols (ml_time: the newest 20 % of rows; ml_user_tail: each user's last 10 rows). Every run trains with
``rocket-ctr train`` (the CLI a user runs; ``--cli`` picks which install) for the same number of
epochs and batch 256, then reads ``metrics.json``: the light tower's test GAUC of the weights the
run keeps (the best validation epoch under early stopping, else the last), plus every epoch's
test GAUC, so "the best epoch with hindsight" is in the same record.
A variant is a recipe of ``benchmarks/recipes.py`` (family ``real logs``): config overrides (a JSON
config file), a FeatureSpec edit (a spec file beside it) and environment variables. ``--din`` adds
DeepCTR's DIN (``benchmarks/deepctr_din.py`` in its own venv: Dice attention, user_id embedded,
Adam(1e-3), dim 18, attention 80-40, DNN 200-80), whose test predictions are scored by
``rocket_ctr.metrics.ranking.gauc``: one GAUC for both systems.
Results are appended to ``WORK/results.jsonl`` run by run, each line with the resolved config the
run trained; a re-run skips the runs whose config, log and seed are already there and prints the
Markdown table (mean ± std over seeds, Δ against the ``defaults`` row), whose rows count the lines
that trained what each variant resolves to today (lines without a stored config are left out).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from experiment_results import append, finished, load, mean_std, provenance, stored_key, unjoined_note
from recipes import (
    DEEPCTR_DIN,
    REAL_LOGS_CHANGES,
    REAL_LOGS_PRESETS,
    ROCKET_CTR,
    overrides,
    recipe,
    recipe_key,
    resolve,
)

ROOT = Path(__file__).resolve().parent.parent
LOGS = {"beauty": "amazon_Beauty", "toys": "amazon_Toys_and_Games", "yelp": "yelp",
        "ml_time": "movielens_latest/time", "ml_user_tail": "movielens_latest/user_tail"}
DIN_VENV = Path("/tmp/deepctr-venv")

FAMILY = "real logs"  # the recipes of recipes.py this script runs


def spec_file(data: Path, edits: dict, out: Path) -> Path:
    """The reference schema's spec with ``edits``: user_id as a feature, vocabularies of the
    training ids instead of hashing, other history buckets."""
    spec = reference_spec()
    train = pq.read_table(data / "train.parquet",
                          columns=["user_id", "item_id", "cate_id", "hist_item_id", "hist_cate_id"])
    if edits.get("user_id"):
        spec["user_features"].append({"name": "user_id", "history": None, "dtype": "int64", "buckets": 100_000,
                                      "vocabulary": None})
    if edits.get("vocabulary"):
        for feature in spec["sequence_features"] + spec["user_features"]:
            if feature["dtype"] != "int64":
                continue
            ids = train[feature["name"]]
            if feature.get("history"):
                ids = pc.unique(pc.list_flatten(train[feature["history"]])).to_pylist() + pc.unique(ids).to_pylist()
            else:
                ids = pc.unique(ids).to_pylist()
            feature["vocabulary"] = sorted(set(ids))
    if edits.get("since_last_event"):
        # log1p(seconds since the user's previous event): one value per request (user side)
        boundaries = [0.5, 1.5, 2.5, 3.5, 4.5, 6.5, 8.5, 10.5, 12.5, 14.5]
        spec.setdefault("numeric_features", []).append({"name": SINCE_LAST, "side": "user", "normalize": True,
                                                        "mean": 3.0, "std": 3.0, "boundaries": boundaries})
    if "history_buckets" in edits:
        spec["history_buckets"] = edits["history_buckets"]
    if "id_hash" in edits:
        spec["id_hash"] = edits["id_hash"]
    out.write_text(json.dumps(spec))
    return out


SINCE_LAST = "since_last_event"


def with_since_last_event(data: Path, out: Path) -> Path:
    """A copy of ``data``'s train and test logs with the column ``since_last_event``: log1p of the
    seconds since the user's previous distinct timestamp (over both logs, in time order; 0 for a
    user's first event), what a server knows at request time. Written once, reused."""
    import numpy as np
    import pyarrow as pa

    if (out / "test.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    parts = {name: pq.read_table(data / f"{name}.parquet") for name in ("train", "test")}
    users = np.concatenate([parts[n]["user_id"].to_numpy() for n in parts])
    ts = np.concatenate([parts[n]["ts"].to_numpy() for n in parts]).astype(np.int64)
    order = np.lexsort((ts, users))
    u, t = users[order], ts[order]
    previous = np.full(len(t), -1, dtype=np.int64)  # the previous *distinct* ts of the same user
    for i in range(len(t)):
        first = i == 0 or u[i] != u[i - 1]
        if first:
            previous[i] = -1
        elif t[i] != t[i - 1]:
            previous[i] = t[i - 1]
        else:
            previous[i] = previous[i - 1]
    gap = np.where(previous < 0, 0.0, np.log1p(np.maximum(t - previous, 0)))
    values = np.empty(len(t))
    values[order] = gap
    start = 0
    for name, table in parts.items():
        column = pa.array(values[start:start + table.num_rows], pa.float64())
        pq.write_table(table.append_column(SINCE_LAST, column), out / f"{name}.parquet")
        start += table.num_rows
    return out


def reference_spec() -> dict:
    """The reference schema's FeatureSpec as its JSON dict."""
    from rocket_ctr.features.spec import FeatureSpec

    with tempfile.TemporaryDirectory() as folder:
        FeatureSpec().save(Path(folder) / "spec.json")
        return json.loads((Path(folder) / "spec.json").read_text())


def train_and_read(command: list, run_dir: Path, env: dict | None = None) -> tuple[dict, dict, float]:
    """Runs one ``rocket-ctr train`` command (exits with its stderr's tail if it fails); returns the run
    dir's metrics.json and config.json and the seconds it took."""
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return (json.loads((run_dir / "metrics.json").read_text()), json.loads((run_dir / "config.json").read_text()),
            round(time.time() - started, 1))


def run_rocket(cli: str, data: Path, run_dir: Path, variant: str, seed: int, epochs: int) -> tuple[dict, dict]:
    """Trains one variant with ``rocket-ctr train``; returns (its measures, the resolved config it trained:
    the run dir's config.json with the recipe's spec edits and environment)."""
    found = recipe(FAMILY, variant)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    setup = run_dir.parent / f"{run_dir.name}.setup"
    setup.mkdir(exist_ok=True)
    config = setup / "config.json"
    config.write_text(json.dumps(overrides(FAMILY, variant, epochs=epochs, seed=seed)))
    if found.spec.get("since_last_event"):
        data = with_since_last_event(data, run_dir.parent.parent / "derived" / f"{data.parent.name}_{data.name}")
    command = [cli, "train", "--train", str(data / "train.parquet"), "--eval", str(data / "test.parquet"),
               "--run-dir", str(run_dir), "--config", str(config), "--quiet"]
    if found.spec:
        command += ["--spec", str(spec_file(data, found.spec, setup / "feature_spec.json"))]
    metrics, trained, seconds = train_and_read(command, run_dir, found.env)
    light_interest = trained["model"]["light_interest"]
    resolved = json.loads(json.dumps({"system": ROCKET_CTR, "config": trained, "spec": found.spec,
                                      "env": found.env}))
    if recipe_key(resolved) != recipe_key(resolve(FAMILY, variant, epochs=epochs, seed=seed)):
        print(f"warning: {run_dir}/config.json is not what {variant!r} resolves to (recorded as trained)",
              flush=True)
    per_epoch = [r.get("eval", {}).get("light", {}).get("gauc") for r in metrics["history"]]
    return {"seconds": seconds, "light": metrics.get("light"),
            "booster": metrics.get("booster"), "epochs_trained": metrics.get("epochs_trained"),
            "light_interest": light_interest,
            "kept_epoch": metrics.get("best_epoch", metrics.get("epoch")),
            "eval_gauc_per_epoch": per_epoch, "train_examples_per_s": metrics.get("train_examples_per_s")}, resolved


def run_din(data: Path, work: Path, seed: int, epochs: int) -> tuple[dict, dict]:
    """Trains DeepCTR's DIN (its recipe's flags); returns (its measures, its resolved config)."""
    import numpy as np

    from rocket_ctr.calibration.measures import ece, pcoc
    from rocket_ctr.metrics.ranking import gauc, logloss

    resolved = resolve(FAMILY, DEEPCTR_DIN, epochs=epochs, seed=seed)
    settings = resolved["config"]
    out = work / f"din_{data.name}_{seed}.npz"
    command = [str(DIN_VENV / "bin" / "python"), str(ROOT / "benchmarks" / "deepctr_din.py"),
               "--data", str(data / "train.parquet"), "--eval", str(data / "test.parquet"),
               "--predictions-out", str(out), *(["--with-user-id"] if settings["with_user_id"] else []),
               "--att-activation", settings["att_activation"], "--l2-reg-embedding", str(settings["l2_reg_embedding"]),
               "--epochs", str(settings["epochs"]), "--seed", str(settings["seed"])]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **resolved["env"]})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    predictions = np.load(out)
    light = {"gauc": gauc(predictions["user_id"], predictions["label"], predictions["prob"]),
             "logloss": logloss(predictions["label"], predictions["prob"]),
             "pcoc": pcoc(predictions["label"], predictions["prob"]),
             "ece": ece(predictions["label"], predictions["prob"])}
    return {"seconds": round(time.time() - started, 1), "light": light,
            "train_examples_per_s": result["examples_per_s"]}, resolved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=["defaults"],
                        help=(f"presets {sorted(REAL_LOGS_PRESETS)} or changes joined by ' + ': "
                              f"{sorted(REAL_LOGS_CHANGES)} (benchmarks/recipes.py)").replace("%", "%%"))
    parser.add_argument("--din", action="store_true", help="also run DeepCTR's DIN (its own venv)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work-dir", default="/tmp/rocket_real_logs")
    parser.add_argument("--cli", default=str(ROOT / ".venv" / "bin" / "rocket-ctr"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    for name in args.variants:
        try:
            resolve(FAMILY, name, epochs=args.epochs)
        except (KeyError, ValueError) as err:
            raise SystemExit(f"{name!r}: {err.args[0] if err.args else err}") from None

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.jsonl"
    done = load(results_path)
    jobs = [(log, name, seed) for seed in args.seeds for log in args.logs
            for name in ([DEEPCTR_DIN] if args.din else []) + args.variants]
    for log, name, seed in ([] if args.table_only else jobs):
        if finished(done.values(), FAMILY, name, {"log": log}, epochs=args.epochs, seed=seed):
            continue
        data = Path(args.data_root) / LOGS[log]
        if name == DEEPCTR_DIN:
            record, resolved = run_din(data, work, seed, args.epochs)
        else:
            record, resolved = run_rocket(args.cli, data, work / "runs" / f"{log}_{name.replace(' ', '_')}_{seed}",
                                          name, seed, args.epochs)
        key = f"{log}|{name}|{seed}|{args.epochs}|{recipe_key(resolved)}"
        append(results_path, done, {"key": key, "log": log, "variant": name, "seed": seed, "epochs": args.epochs,
                                    **provenance(FAMILY, name, data, config=resolved, epochs=args.epochs, seed=seed),
                                    **record})
        print(f"{log:<7} {name:<28} seed {seed}: light gauc {record['light']['gauc']:.4f}  ({record['seconds']} s)",
              flush=True)
    print(table(done.values(), args.epochs, args.variants))


def table(records, epochs: int, names=()) -> str:
    """Markdown: rows = recipes, columns = logs; light test GAUC mean ± std, Δ vs defaults. A row's
    cells are the lines whose stored config is what its recipe resolves to today (``names``, then
    every recipe a line was recorded under and still resolves to its config)."""
    records = [r for r in records if r.get("epochs") == epochs]
    logs = [log for log in LOGS if any(r["log"] == log for r in records)]
    keys = {}
    for name in [DEEPCTR_DIN, "defaults", *names, *sorted({r["recipe"] for r in records if "recipe" in r})]:
        try:
            keys.setdefault(name, recipe_key(resolve(FAMILY, name, epochs=epochs)))
        except (KeyError, ValueError):
            continue
    stored = [(stored_key(r), r) for r in records]
    rows = {name: [r for k, r in stored if k == key] for name, key in keys.items()}
    names = [n for n, rs in rows.items() if rs]
    lines = [f"| variant ({epochs} epochs, light test GAUC) | " + " | ".join(logs) + " |",
             "| --- |" + " --- |" * len(logs)]

    def values(log, name):
        return [r["light"]["gauc"] for r in rows.get(name, []) if r["log"] == log]

    for name in names:
        cells = []
        for log in logs:
            got, base = values(log, name), values(log, "defaults")
            delta = (f" ({statistics.mean(got) - statistics.mean(base):+.4f})"
                     if got and base and name != "defaults" else "")
            cells.append(f"{mean_std(got)}{delta} n={len(got)}" if got else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| variant: kept epoch's test GAUC − the best epoch's in hindsight | " + " | ".join(logs) + " |",
              "| --- |" + " --- |" * len(logs)]
    for name in names:
        cells = []
        for log in logs:
            gaps = [r["light"]["gauc"] - max(r["eval_gauc_per_epoch"]) for r in rows[name]
                    if r["log"] == log and r.get("eval_gauc_per_epoch")]
            cells.append(f"{mean_std(gaps)} (worst {min(gaps):+.4f})" if gaps else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| variant: light PCOC / ECE (10 equal-mass bins) | " + " | ".join(logs) + " |",
              "| --- |" + " --- |" * len(logs)]
    for name in names:
        cells = []
        for log in logs:
            pcocs = [r["light"]["pcoc"] for r in rows[name] if r["log"] == log and "pcoc" in r["light"]]
            eces = [r["light"]["ece"] for r in rows[name] if r["log"] == log and "ece" in r["light"]]
            cells.append(f"{statistics.mean(pcocs):.3f} / {mean_std(eces)}" if eces else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = unjoined_note(records)
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


if __name__ == "__main__":
    main()
