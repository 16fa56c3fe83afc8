"""Does rocket launching work here? The paper's ablations on a generated log, mean ± std over seeds.

    .venv/bin/python benchmarks/experiment_ablation.py [--rows 1120000] [--seeds 0 1 2] [--epochs 1]

Generates one log (≥ 1 M training rows by default), then trains every variant with each seed
and prints a Markdown table of the light tower's (and, where trained, the booster's) test GAUC
and AUC. Results are appended to ``WORK/results.jsonl`` as each run finishes, so an interrupted
experiment keeps what it measured and a re-run skips finished runs.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from experiment_results import append, load, mean_std

# The paper's training, as these runs were measured: no validation split, the hint from the first
# step and into the shared bottom (today's defaults protect the light tower: experiment_protection.py).
PAPER = dict(validation_fraction=0.0, hint_warmup=False, hint_trains_bottom=True, early_stopping_patience=0)
VARIANTS = {
    "base": dict(mode="base"),
    "rocket (mimic)": dict(mode="rocket"),
    "booster": dict(mode="booster"),
    "rocket --no-gradient-block": dict(mode="rocket", gradient_block=False),
    "rocket --no-share": dict(mode="rocket", share=False),
    "two-stage": dict(mode="two-stage"),
    "rocket --hint mse": dict(mode="rocket", hint="mse"),
    "rocket --hint kd (T=2)": dict(mode="rocket", hint="kd", temperature=2.0),
}
# Follow-ups that look for why rocket does or does not beat base (run with --variants ... --seeds 0).
INVESTIGATIONS = {
    "rocket --hint-weight 0.1": dict(mode="rocket", hint_weight=0.1),
    "booster --no-booster-batch-norm": dict(mode="booster", booster_batch_norm=False),
    "rocket --no-booster-batch-norm": dict(mode="rocket", booster_batch_norm=False),
    "rocket --hint-gate": dict(mode="rocket", hint_gate=True),
    "rocket --hint-warmup (2 epochs, 5% validation)": dict(mode="rocket", hint_warmup=True,
                                                            validation_fraction=0.05, epochs=2),
    "base (2 epochs, 5% validation)": dict(mode="base", validation_fraction=0.05, epochs=2),
    "rocket (2 epochs, 5% validation)": dict(mode="rocket", validation_fraction=0.05, epochs=2),
}
VARIANTS.update(INVESTIGATIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_120_000, help="generated rows (10%% become the test split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v not in INVESTIGATIONS],
                        choices=list(VARIANTS))
    parser.add_argument("--work-dir", default="/tmp/rocket_ablation")
    args = parser.parse_args()

    from rocket_ctr.config.schema import RocketConfig
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
            key = f"{name}|{seed}|{args.epochs}"
            if key in done:
                continue
            run_dir = work / "runs" / f"{name.replace(' ', '_')}_{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            config = RocketConfig(**{**PAPER, "epochs": args.epochs, **VARIANTS[name]}, seed=seed)
            started = time.time()
            metrics = Trainer(run_dir, data / "train", data / "test", config, verbose=0).fit()
            record = {"key": key, "variant": name, "seed": seed, "epochs": args.epochs,
                      "seconds": time.time() - started,
                      "train_examples_per_s": metrics["train_examples_per_s"],
                      **{t: metrics[t] for t in ("light", "booster") if t in metrics}}
            append(results_path, done, record)
            print(f"{name:<28} seed {seed}: " + "  ".join(
                f"{t} gauc {record[t]['gauc']:.4f} auc {record[t]['auc']:.4f}"
                for t in ("light", "booster") if t in record),
                flush=True)
    print(table(done.values(), data))


def table(records, data: Path) -> str:
    """Markdown table: mean ± std over seeds per variant and tower."""
    import pyarrow.parquet as pq

    from rocket_ctr.metrics.ranking import auc, gauc

    test = pq.read_table(data / "test", columns=["user_id", "label", "click_prob"])
    labels = test["label"].to_numpy()
    oracle = (gauc(test["user_id"].to_numpy(), labels, test["click_prob"].to_numpy()),
              auc(labels, test["click_prob"].to_numpy()))
    by_variant: dict = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)

    def cell(rows, tower, metric):
        return mean_std([r[tower][metric] for r in rows if tower in r])

    lines = ["| variant | seeds | light GAUC | light AUC | booster GAUC | booster AUC |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in VARIANTS:
        rows = by_variant.get(name)
        if rows:
            lines.append(f"| {name} | {len(rows)} | {cell(rows, 'light', 'gauc')} | {cell(rows, 'light', 'auc')} "
                         f"| {cell(rows, 'booster', 'gauc')} | {cell(rows, 'booster', 'auc')} |")
    lines.append(f"| oracle (true click probability) | – | {oracle[0]:.4f} | {oracle[1]:.4f} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
