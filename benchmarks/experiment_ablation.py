"""Does rocket launching work here? The paper's ablations on a generated log, mean ± std over seeds.

    .venv/bin/python benchmarks/experiment_ablation.py [--rows 1120000] [--seeds 0 1 2] [--epochs 1]

Generates one log (≥ 1 M training rows by default), then trains every variant (recipes of
``benchmarks/recipes.py``, family ``ablation``) with each seed and prints a Markdown table of the
light tower's (and, where trained, the booster's) test GAUC and AUC. Results are appended to
``WORK/results.jsonl`` as each run finishes, each line with the resolved config it trained, so an
interrupted experiment keeps what it measured and a re-run skips the runs whose config and seed
are there; the table counts for a variant the lines that trained what it resolves to today with
``--epochs`` (lines without a stored config are left out).
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from experiment_results import append, finished, lines_of, load, mean_std, provenance, unjoined_note
from recipes import ABLATION, ABLATION_INVESTIGATIONS, recipe_key, resolve, rocket_config

FAMILY = "ablation"  # the recipes of recipes.py this script runs: the paper's training (no validation
# split, the hint from the first step and into the shared bottom; experiment_protection.py runs the defaults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_120_000, help="generated rows (10%% become the test split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=[v for v in ABLATION if v not in ABLATION_INVESTIGATIONS],
                        choices=list(ABLATION))
    parser.add_argument("--work-dir", default="/tmp/rocket_ablation")
    args = parser.parse_args()

    from rocket_ctr.datagen.synthetic import generate
    from rocket_ctr.train.trainer import Trainer

    work = Path(args.work_dir)
    data = work / f"log_{args.rows}"
    if not (data / "params.json").exists():
        generate(data, n_rows=args.rows, seed=1234, with_oracle=True)
    results_path = work / "results.jsonl"
    done = load(results_path)
    for seed in args.seeds:
        for name in args.variants:
            run = {"epochs": args.epochs, "seed": seed}
            if finished(done.values(), FAMILY, name, **run):
                continue
            key = f"{name}|{seed}|{args.epochs}|{recipe_key(resolve(FAMILY, name, **run))}"
            run_dir = work / "runs" / f"{name.replace(' ', '_')}_{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            config = rocket_config(FAMILY, name, **run)
            started = time.time()
            metrics = Trainer(run_dir, data / "train", data / "test", config, verbose=0).fit()
            record = {"key": key, "variant": name, **provenance(FAMILY, name, data, **run), "epochs": args.epochs,
                      "seconds": time.time() - started,
                      "train_examples_per_s": metrics["train_examples_per_s"],
                      **{t: metrics[t] for t in ("light", "booster") if t in metrics}}
            append(results_path, done, record)
            print(f"{name:<28} seed {seed}: " + "  ".join(
                f"{t} gauc {record[t]['gauc']:.4f} auc {record[t]['auc']:.4f}"
                for t in ("light", "booster") if t in record),
                flush=True)
    print(table(done.values(), data, args.epochs))


def table(records, data: Path, epochs: int) -> str:
    """Markdown table: mean ± std over seeds per variant and tower, of the lines that trained what
    each variant resolves to today with ``epochs``."""
    import pyarrow.parquet as pq

    from rocket_ctr.metrics.ranking import auc, gauc

    test = pq.read_table(data / "test", columns=["user_id", "label", "click_prob"])
    labels = test["label"].to_numpy()
    oracle = (gauc(test["user_id"].to_numpy(), labels, test["click_prob"].to_numpy()),
              auc(labels, test["click_prob"].to_numpy()))
    records = list(records)

    def cell(rows, tower, metric):
        return mean_std([r[tower][metric] for r in rows if tower in r])

    lines = ["| variant | seeds | light GAUC | light AUC | booster GAUC | booster AUC |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in ABLATION:
        rows = lines_of(records, FAMILY, name, epochs=epochs)
        if rows:
            lines.append(f"| {name} | {len(rows)} | {cell(rows, 'light', 'gauc')} | {cell(rows, 'light', 'auc')} "
                         f"| {cell(rows, 'booster', 'gauc')} | {cell(rows, 'booster', 'auc')} |")
    lines.append(f"| oracle (true click probability) | – | {oracle[0]:.4f} | {oracle[1]:.4f} | | |")
    note = unjoined_note(records)
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


if __name__ == "__main__":
    main()
