"""Day 1 / day 2 on a drifting generated log: does a warm-started day-2 model need fewer steps?

    .venv/bin/python benchmarks/bench_warm_start.py [--work runs/bench_warm_start] [--rows 600000]
        [--epochs 4] [--seeds 0 1 2]

The goal (issue 16): the warm-started day-2 model reaches the from-scratch day-2 GAUC (within
0.002) in at most half the steps, both measured on day 3's data.

1. ``generate --days 3``: one log over three days whose users' interests drift day to day.
2. Per seed: day 1 from scratch; then day 2 three ways, the same config and ``--epochs`` each:
   ``scratch``, ``warm`` (``--warm-start`` day 1, weights and optimizer state) and
   ``warm-weights`` (``--no-warm-start-optimizer``). Every run evaluates the light tower on day 3
   after each epoch (``--eval``), early stopping off so every run trains every epoch.
3. Target = the scratch run's best day-3 GAUC - 0.002. Steps to target = the training steps of the
   first epoch whose day-3 GAUC reaches it (null: never). ``ratio`` = warm steps / scratch steps;
   the goal holds when ratio <= 0.5. Step resolution is one epoch (``--epochs`` sets it).

Resumable: every finished (seed, arm) is appended to ``WORK/results.jsonl`` and skipped on a
re-run with the same sizes; an interrupted training resumes from its checkpoint. Prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TOLERANCE = 0.002
ARMS = ("scratch", "warm", "warm-weights")


def history(run_dir: Path) -> list[dict]:
    """Per epoch: cumulative training steps and the light tower's day-3 GAUC."""
    records = json.loads((run_dir / "history.json").read_text())
    steps, out = 0, []
    for record in records:
        steps += record["steps"]
        out.append({"epoch": record["epoch"], "steps": steps, "gauc": record["eval"]["light"]["gauc"]})
    return out


def steps_to(curve: list[dict], target: float) -> int | None:
    return next((point["steps"] for point in curve if point["gauc"] is not None and point["gauc"] >= target), None)


def train(run_dir: Path, data: Path, day3: Path, config, warm_start=None, optimizer: bool = True) -> list[dict]:
    from rocket_ctr.trainer import Trainer

    Trainer(run_dir, data, day3, config, verbose=0, warm_start=warm_start, warm_start_optimizer=optimizer).fit()
    return history(run_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_warm_start"))
    parser.add_argument("--rows", type=int, default=600_000, help="rows over the three days")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of every run (the step resolution)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--small-model", action="store_true", help="tiny widths (a smoke test of the script)")
    args = parser.parse_args(argv)

    from rocket_ctr.config import RocketConfig
    from rocket_ctr.datagen.synthetic import generate

    sizes = {"rows": args.rows, "users": args.users, "items": args.items, "epochs": args.epochs,
             "batch_size": args.batch_size, "small_model": args.small_model}
    work = args.work / "_".join(f"{k}{v}" for k, v in sizes.items())
    log = work / "log"
    if not (log / "params.json").is_file() or not json.loads((log / "params.json").read_text()).get("complete"):
        generate(log, n_rows=args.rows, n_users=args.users, n_items=args.items, days=3, seed=1234)
    day1, day2, day3 = (log / f"day-0{d}" for d in (1, 2, 3))
    results_path = work / "results.jsonl"
    done = {(r["seed"], r["arm"]): r for r in map(json.loads, results_path.read_text().splitlines())} \
        if results_path.exists() else {}

    for seed in args.seeds:
        flat = dict(epochs=args.epochs, batch_size=args.batch_size, seed=seed, early_stopping_patience=0)
        if args.small_model:
            flat.update(embedding_dim=4, light_units=(16,), booster_units=(32, 16), attention_units=(8,))
        config = RocketConfig(**flat)
        day1_run = work / f"seed{seed}" / "day1"
        if not (day1_run / "metrics.json").exists() or any((seed, arm) not in done for arm in ARMS):
            train(day1_run, day1, day3, config)
        for arm in ARMS:
            if (seed, arm) in done:
                continue
            warm = None if arm == "scratch" else day1_run
            curve = train(work / f"seed{seed}" / arm, day2, day3, config, warm, optimizer=arm == "warm")
            done[(seed, arm)] = {"seed": seed, "arm": arm, "sizes": sizes, "curve": curve}
            with results_path.open("a") as f:
                f.write(json.dumps(done[(seed, arm)]) + "\n")
            print(f"seed {seed} {arm}: day-3 GAUC per epoch {[p['gauc'] for p in curve]}", flush=True)

    print(f"\n{'seed':>4} {'arm':<13} {'best gauc':>9} {'steps to scratch best - %.3f' % TOLERANCE:>32} {'ratio':>6}")
    verdicts = []
    for seed in args.seeds:
        scratch = done[(seed, "scratch")]["curve"]
        target = max(p["gauc"] for p in scratch if p["gauc"] is not None) - TOLERANCE
        base_steps = steps_to(scratch, target)
        for arm in ARMS:
            curve = done[(seed, arm)]["curve"]
            steps = steps_to(curve, target)
            ratio = steps / base_steps if steps is not None and base_steps else None
            if arm == "warm":
                verdicts.append(ratio is not None and ratio <= 0.5)
            best = max(p["gauc"] for p in curve if p["gauc"] is not None)
            print(f"{seed:>4} {arm:<13} {best:>9.4f} {str(steps):>32} {'-' if ratio is None else f'{ratio:.2f}':>6}")
    print(f"\ngoal (warm reaches the scratch GAUC - {TOLERANCE} in <= half the steps): "
          f"{'met' if all(verdicts) else 'NOT met'} for {sum(verdicts)} of {len(verdicts)} seeds; "
          f"results in {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
