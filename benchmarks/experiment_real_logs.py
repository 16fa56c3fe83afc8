"""What each modelling choice costs on the real logs, beside DeepCTR's DIN: logs × variants × seeds.

    .venv/bin/python benchmarks/experiment_real_logs.py [--logs beauty toys yelp] [--seeds 0 1 2]
        [--variants defaults ...] [--din] [--epochs 3] [--work-dir /tmp/rocket_real_logs]

Logs: the three real logs of ``../shared/data`` (train.parquet = every event before each user's
last, test.parquet = each user's last positive and its negative). Every run trains with
``rocket-ctr train`` (the CLI a user runs; ``--cli`` picks which install) for the same number of
epochs and batch 256, then reads ``metrics.json``: the light tower's test GAUC of the weights the
run keeps (the best validation epoch under early stopping, else the last), plus every epoch's
test GAUC, so "the best epoch with hindsight" is in the same record.
A variant is config overrides (a JSON config file), a FeatureSpec edit (a spec file beside it) and
environment variables. ``--din`` adds DeepCTR's DIN (``benchmarks/deepctr_din.py`` in its own
venv: Dice attention, user_id embedded, Adam(1e-3), dim 18, attention 80-40, DNN 200-80), whose
test predictions are scored by ``rocket_ctr.metrics.ranking.gauc``: one GAUC for both systems.
Results are appended to ``WORK/results.jsonl`` run by run; a re-run skips finished runs and
prints the Markdown table (mean ± std over seeds, Δ against the ``defaults`` row).
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

from experiment_results import append, load, mean_std

ROOT = Path(__file__).resolve().parent.parent
LOGS = {"beauty": "amazon_Beauty", "toys": "amazon_Toys_and_Games", "yelp": "yelp"}
DIN_VENV = Path("/tmp/deepctr-venv")

# A variant is "defaults", or changes joined by " + " on top of "no validation" (so the choices
# of the fit are measured without the validation split's own effect), e.g. "lr 1e-3 + relu attention".
# change -> (config overrides, spec edits, environment)
CHANGES = {
    "no validation": ({"validation_fraction": 0.0}, {}, {}),
    "lr 1e-3": ({"learning_rate": 1e-3}, {}, {}),
    "lr 2e-3": ({"learning_rate": 2e-3}, {}, {}),
    "relu attention": ({"attention_activation": "relu"}, {}, {}),
    "dice attention": ({"attention_activation": "dice"}, {}, {}),
    "user_id feature": ({}, {"user_id": True}, {}),
    "vocabulary (no hashing)": ({}, {"vocabulary": True}, {}),
    "one bucket (50)": ({}, {"history_buckets": [50]}, {}),
    "text id hash": ({}, {"id_hash": "string"}, {}),  # ids hashed as before FeatureSpec.id_hash
    "length buckets": ({"length_buckets": True}, {}, {}),  # the default before mixed-length batches
    "dense Adam": ({"optimizer": "adam"}, {}, {}),
    "shuffle 100k": ({"shuffle_buffer": 100_000}, {}, {}),
    "xla": ({"jit_compile": True}, {}, {}),
    "base mode": ({"mode": "base"}, {}, {}),
    # the defaults before the real-logs issue (with 3 epochs like every row)
    "previous defaults": ({"learning_rate": 5e-3, "validation_fraction": 0.05, "validation_split": "users",
                           "early_stopping_patience": 1}, {}, {}),
    "lr 5e-3": ({"learning_rate": 5e-3}, {}, {}),
    "user hold-out": ({"validation_fraction": 0.05, "validation_split": "users"}, {}, {}),
    "patience 1": ({"early_stopping_patience": 1}, {}, {}),
    # the light tower's own interest extractor (the default, "shared", reads the booster's attention)
    "light shared": ({"light_interest": "shared"}, {}, {}),  # the booster's DIN attention (the default before dot)
    "light din 32-16": ({"light_interest": "din", "light_attention": [32, 16]}, {}, {}),
    "light dot": ({"light_interest": "dot", "light_projection": 16}, {}, {}),
    "light dot raw": ({"light_interest": "dot", "light_projection": 0}, {}, {}),  # c·h / √D, no weights
    "light mean": ({"light_interest": "mean"}, {}, {}),
    "light history 20": ({"light_history": 20}, {}, {}),  # e.g. "light dot + light history 20"
    # the rocket recipe (issue 14); "validation" puts the default split back on top of "no validation"
    "validation": ({"validation_fraction": 0.05}, {}, {}),
    "validation 0.1": ({"validation_fraction": 0.1}, {}, {}),  # more newest events held out, then folded in
    "validation 0.15": ({"validation_fraction": 0.15}, {}, {}),
    "no fold-in": ({"fold_in_validation": "no"}, {}, {}),  # the validation rows never trained on
    "validation auto": ({"validation_fraction": None}, {}, {}),  # the default (after "no validation")
    "no warmup": ({"hint_warmup": False}, {}, {}),  # booster CE into the shared bottom from the first step
    "booster from start": ({"booster_bottom": "from-start"}, {}, {}),  # booster CE into the bottom; λ waits
    "hint 0": ({"hint_weight": 0.0}, {}, {}),
    "hint 0.01": ({"hint_weight": 0.01}, {}, {}),
    "hint 0.1": ({"hint_weight": 0.1}, {}, {}),
    "hint into bottom": ({"hint_trains_bottom": True}, {}, {}),
    "hint mse": ({"hint": "mse"}, {}, {}),
    "hint kd": ({"hint": "kd"}, {}, {}),
    "hint scaled": ({"hint_scale_to_label": True}, {}, {}),  # hint gradient the size of the label's
    "booster din+dot": ({"booster_interest": "din+dot"}, {}, {}),
    "booster dot": ({"booster_interest": "dot"}, {}, {}),
    "no share": ({"share": False}, {}, {}),  # each tower its own embeddings: the hint is the only channel
    # DeepCTR's embeddings: normal(0, 1e-4) rows and an L2 on the whole tables (dense Adam: every row decays)
    "embedding init 1e-4": ({"embedding_init_std": 1e-4}, {}, {}),
    "embedding l2 1e-6": ({"embedding_l2": 1e-6, "optimizer": "adam"}, {}, {}),
    # booster capacity the light tower does not pay for at serving time (issue 14, part 2)
    "booster cross 2": ({"booster_cross": 2}, {}, {}),  # DCN-v2 cross stack before the booster's MLP
    # --attention-units are the booster's DIN widths; with the default light_interest "shared" the light
    # tower reads that very attention, so this widens (and slows) the served light tower too: measure it
    # booster-only as "light din 32-16 + booster attention 160-80" (or light dot / light mean)
    "booster attention 160-80": ({"attention_units": [160, 80]}, {}, {}),
}
PRESETS = {
    "defaults": [],
    "previous defaults": ["previous defaults"],
    "base": ["base mode"],  # --mode base with every other default
    "reference-like": ["no validation", "lr 1e-3", "relu attention", "shuffle 100k", "xla", "user_id feature",
                       "vocabulary (no hashing)", "one bucket (50)", "dense Adam"],
}


def variant_settings(name: str) -> tuple[dict, dict, dict]:
    """(config overrides, spec edits, environment) of a variant name."""
    changes = PRESETS.get(name)
    if changes is None:
        changes = ["no validation", *[c for c in name.split(" + ") if c != "no validation"]]
    unknown = [c for c in changes if c not in CHANGES]
    if unknown:
        raise SystemExit(f"unknown changes {unknown}; known: {sorted(CHANGES)} and presets {sorted(PRESETS)}")
    config, spec, env = {}, {}, {}
    for change in changes:
        for into, part in zip((config, spec, env), CHANGES[change]):
            into.update(part)
    return config, spec, env


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
    if "history_buckets" in edits:
        spec["history_buckets"] = edits["history_buckets"]
    if "id_hash" in edits:
        spec["id_hash"] = edits["id_hash"]
    out.write_text(json.dumps(spec))
    return out


def reference_spec() -> dict:
    """The reference schema's FeatureSpec as its JSON dict."""
    from rocket_ctr.features.spec import FeatureSpec

    with tempfile.TemporaryDirectory() as folder:
        FeatureSpec().save(Path(folder) / "spec.json")
        return json.loads((Path(folder) / "spec.json").read_text())


def run_rocket(cli: str, data: Path, run_dir: Path, variant: str, seed: int, epochs: int) -> dict:
    overrides, edits, env = variant_settings(variant)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    setup = run_dir.parent / f"{run_dir.name}.setup"
    setup.mkdir(exist_ok=True)
    config = setup / "config.json"
    config.write_text(json.dumps({"epochs": epochs, "batch_size": 256, "seed": seed, **overrides}))
    command = [cli, "train", "--train", str(data / "train.parquet"), "--eval", str(data / "test.parquet"),
               "--run-dir", str(run_dir), "--config", str(config), "--quiet"]
    if edits:
        command += ["--spec", str(spec_file(data, edits, setup / "feature_spec.json"))]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    light_interest = json.loads((run_dir / "config.json").read_text())["model"]["light_interest"]
    per_epoch = [r.get("eval", {}).get("light", {}).get("gauc") for r in metrics["history"]]
    return {"seconds": round(time.time() - started, 1), "light": metrics.get("light"),
            "booster": metrics.get("booster"), "epochs_trained": metrics.get("epochs_trained"),
            "light_interest": light_interest,
            "kept_epoch": metrics.get("best_epoch", metrics.get("epoch")),
            "eval_gauc_per_epoch": per_epoch, "train_examples_per_s": metrics.get("train_examples_per_s")}


def run_din(data: Path, work: Path, seed: int, epochs: int) -> dict:
    import numpy as np

    from rocket_ctr.metrics.ranking import gauc, logloss

    out = work / f"din_{data.name}_{seed}.npz"
    command = [str(DIN_VENV / "bin" / "python"), str(ROOT / "benchmarks" / "deepctr_din.py"),
               "--data", str(data / "train.parquet"), "--eval", str(data / "test.parquet"),
               "--predictions-out", str(out), "--with-user-id", "--att-activation", "dice",
               "--l2-reg-embedding", "1e-6", "--epochs", str(epochs), "--seed", str(seed)]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    predictions = np.load(out)
    light = {"gauc": gauc(predictions["user_id"], predictions["label"], predictions["prob"]),
             "logloss": logloss(predictions["label"], predictions["prob"])}
    return {"seconds": round(time.time() - started, 1), "light": light,
            "train_examples_per_s": result["examples_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=["defaults"],
                        help=f"presets {sorted(PRESETS)} or changes joined by ' + ': {sorted(CHANGES)}")
    parser.add_argument("--din", action="store_true", help="also run DeepCTR's DIN (its own venv)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work-dir", default="/tmp/rocket_real_logs")
    parser.add_argument("--cli", default=str(ROOT / ".venv" / "bin" / "rocket-ctr"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.jsonl"
    done = load(results_path)
    jobs = [(log, name, seed) for seed in args.seeds for log in args.logs
            for name in (["DeepCTR DIN"] if args.din else []) + args.variants]
    for log, name, seed in ([] if args.table_only else jobs):
        key = f"{log}|{name}|{seed}|{args.epochs}"
        if key in done:
            continue
        data = Path(args.data_root) / LOGS[log]
        if name == "DeepCTR DIN":
            record = run_din(data, work, seed, args.epochs)
        else:
            record = run_rocket(args.cli, data, work / "runs" / f"{log}_{name.replace(' ', '_')}_{seed}",
                                name, seed, args.epochs)
        append(results_path, done,
               {"key": key, "log": log, "variant": name, "seed": seed, "epochs": args.epochs, **record})
        print(f"{log:<7} {name:<28} seed {seed}: light gauc {record['light']['gauc']:.4f}  ({record['seconds']} s)",
              flush=True)
    print(table(done.values(), args.epochs))


def table(records, epochs: int) -> str:
    """Markdown: rows = variants, columns = logs; light test GAUC mean ± std, Δ vs defaults."""
    records = [r for r in records if r["epochs"] == epochs]
    logs = [log for log in LOGS if any(r["log"] == log for r in records)]
    names = list(dict.fromkeys(["DeepCTR DIN", "defaults", *sorted(r["variant"] for r in records)]))
    names = [n for n in names if any(r["variant"] == n for r in records)]
    lines = [f"| variant ({epochs} epochs, light test GAUC) | " + " | ".join(logs) + " |",
             "| --- |" + " --- |" * len(logs)]

    def values(log, name):
        return [r["light"]["gauc"] for r in records if r["log"] == log and r["variant"] == name]

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
            gaps = [r["light"]["gauc"] - max(r["eval_gauc_per_epoch"]) for r in records
                    if r["log"] == log and r["variant"] == name and r.get("eval_gauc_per_epoch")]
            cells.append(f"{mean_std(gaps)} (worst {min(gaps):+.4f})" if gaps else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
