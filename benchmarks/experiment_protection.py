"""Does rocket launching ever hurt the light tower? Two generated regimes × base / rocket / protected.

    .venv/bin/python benchmarks/experiment_protection.py [--seeds 0 1 2] [--regimes plain cross]

Regimes (generated logs, 600 k rows, the last 20 % of time is the test split, 2 epochs):
  plain: the default generator (additive signals and a recency-weighted interest match).
  cross: plus a high-order (item, occupation, gender) interaction (``--cross-strength 1.5``)
         meant to reward the wider, deeper booster.
Variants (recipes of ``benchmarks/recipes.py``, family ``protection``; every one holds out the same
5 % of training users for validation):
  base:          the light tower alone (early stopping on validation GAUC, patience 1).
  booster:       the booster alone (shows which tower is stronger in the regime).
  rocket paper:  eq. (1) as in the paper: λ = 1 logit MSE from the first step, into the bottom.
  rocket defaults: ``rocket-ctr train`` with today's defaults (RocketConfig()).
  rocket --no-share: the same with separate embeddings/attention per tower.
  (follow-ups, by name: launch on GAUC; ``base (patience 2)`` = ``--mode base`` defaults;
  ``rocket multi-task`` = a dot-attention booster whose cross-entropy trains the shared
  embeddings from the first step, λ = 0: the recipe screened on the real logs.)
Prints a Markdown table of test GAUC (mean ± std over seeds). Results are appended to
``WORK/results.jsonl`` as each run finishes, each line with the resolved config it trained; a
re-run skips the runs whose config, regime and seed are there, and the table counts for a variant
the lines that trained what it resolves to today (lines without a stored config are left out).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from experiment_results import append, finished, lines_of, load, mean_std, provenance, unjoined_note
from recipes import PROTECTION, recipe_key, resolve, rocket_config

ROWS = 600_000
REGIMES = {
    "plain": dict(n_rows=ROWS, test_fraction=0.2),
    "cross": dict(n_rows=ROWS, test_fraction=0.2, cross_strength=1.5),
}
FAMILY = "protection"  # the recipes of recipes.py this script runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--variants", nargs="+", default=list(PROTECTION)[:4], choices=list(PROTECTION))
    parser.add_argument("--work-dir", default="/tmp/rocket_protection")
    args = parser.parse_args()

    from rocket_ctr.datagen.synthetic import generate
    from rocket_ctr.train.trainer import Trainer

    work = Path(args.work_dir)
    results_path = work / "results.jsonl"
    done = load(results_path)
    for regime in args.regimes:
        data = work / f"log_{regime}"
        if not (data / "params.json").exists():
            generate(data, seed=1234, with_oracle=True, **REGIMES[regime])
        for seed in args.seeds:
            for name in args.variants:
                if finished(done.values(), FAMILY, name, {"regime": regime}, seed=seed):
                    continue
                key = f"{regime}|{name}|{seed}|{recipe_key(resolve(FAMILY, name, seed=seed))}"
                run_dir = work / "runs" / f"{regime}_{name.replace(' ', '_')}_{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                config = rocket_config(FAMILY, name, seed=seed)
                started = time.time()
                metrics = Trainer(run_dir, data / "train", data / "test", config, verbose=0).fit()
                record = {"key": key, "regime": regime, "variant": name, **provenance(FAMILY, name, data, seed=seed),
                          "seconds": round(time.time() - started, 1),
                          "booster_beat_light_on_validation": metrics.get("booster_beat_light_on_validation"),
                          "hint_scale": [r.get("hint_scale") for r in metrics["history"]],
                          **{t: metrics[t] for t in ("light", "booster") if t in metrics}}
                append(results_path, done, record)
                print(f"{regime:<6} {name:<20} seed {seed}: " + "  ".join(
                    f"{t} gauc {record[t]['gauc']:.4f}" for t in ("light", "booster") if t in record), flush=True)
    print(table(done.values(), work))


def table(records, work: Path) -> str:
    """Markdown table: per regime, light (and booster) test GAUC mean ± std over seeds of the lines
    that trained what each variant resolves to today."""
    import pyarrow.parquet as pq

    from rocket_ctr.metrics.ranking import gauc

    def cell(rows, tower):
        return mean_std([r[tower]["gauc"] for r in rows if tower in r])

    lines = ["| regime | variant | seeds | light GAUC | booster GAUC | Δ light vs base |",
             "| --- | --- | --- | --- | --- | --- |"]
    records = list(records)
    for regime in REGIMES:
        in_regime = [r for r in records if r["regime"] == regime]
        if not in_regime:
            continue
        base = [r["light"]["gauc"] for r in lines_of(in_regime, FAMILY, "base")]
        for name in PROTECTION:
            rows = lines_of(in_regime, FAMILY, name)
            if not rows:
                continue
            light = [r["light"]["gauc"] for r in rows if "light" in r]
            delta = (f"{statistics.mean(light) - statistics.mean(base):+.4f}"
                     if light and base and name != "base" else "")
            lines.append(f"| {regime} | {name} | {len(rows)} | {cell(rows, 'light')} | {cell(rows, 'booster')} "
                         f"| {delta} |")
        test = pq.read_table(work / f"log_{regime}" / "test", columns=["user_id", "label", "click_prob"])
        oracle = gauc(test["user_id"].to_numpy(), test["label"].to_numpy(), test["click_prob"].to_numpy())
        lines.append(f"| {regime} | oracle (true click probability) | – | {oracle:.4f} | | |")
    note = unjoined_note(records)
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


if __name__ == "__main__":
    main()
