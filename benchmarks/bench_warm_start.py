"""Day 1 / day 2 on a drifting generated log: does a warm-started day-2 model need fewer steps?

    .venv/bin/python benchmarks/bench_warm_start.py [--work runs/bench_warm_start] [--rows 600000]
        [--users 20000] [--items 20000] [--epochs 3] [--eval-every 100] [--seeds 0 1 2]

The goal: the warm-started day-2 model reaches the from-scratch day-2 GAUC (within
0.002) in at most half the steps, both measured on day 3's data.

1. ``generate --days 3``: one log over three days whose users' interests drift day to day.
2. Per seed: day 1 from scratch; then day 2 three ways, the same config and ``--epochs`` each:
   ``scratch``, ``warm`` (``--warm-start`` day 1, weights and optimizer state) and
   ``warm-weights`` (``--no-warm-start-optimizer``). Every day-2 run evaluates the light tower on
   all of day 3 at step 0, every ``--eval-every`` training steps and at each epoch end (a callback
   beside the trainer's own; evaluation does not change training); a warm run stops the
   every-``--eval-every`` evaluations once it has reached the target (they could not change its
   steps to target), keeping the epoch-end ones. Early stopping is off, so every run trains every
   epoch.
3. Target = the scratch run's best day-3 GAUC after step 0 - 0.002. Steps to target = the first
   evaluated step whose day-3 GAUC reaches it (null: never; 0: the day-1 model already does).
   ``ratio`` = warm steps / scratch steps; the goal holds when ratio <= 0.5. Step resolution:
   ``--eval-every`` (the table prints it as a share of the scratch steps).

Every run trains the recipe ``warm start`` (``warm start, small model`` with ``--small-model``) of
``benchmarks/recipes.py``: the defaults without early stopping, with ``--epochs``, ``--batch-size``
and the seed. Resumable: every finished (seed, arm) is appended to ``WORK/results.jsonl`` with the
resolved config it trained and skipped on a re-run with the same sizes while that config is what
the recipe resolves to today (lines without a stored config are left out, with a note); an
interrupted day-1 training resumes from its checkpoint, an interrupted day-2 run starts over (its
curve lives in memory). Prints a table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

TOLERANCE = 0.002
FAMILY = "warm start"  # the recipes of benchmarks/recipes.py this script runs
ARMS = ("scratch", "warm", "warm-weights")


def day3_curve_callback(trainer, day3: Path, every: int, target: float | None = None):
    """A trainer callback: the light tower's day-3 metrics at step 0, every ``every`` steps (until
    the GAUC reaches ``target``, if given) and at each epoch end, as
    ``[{"steps", "epoch", "gauc", "auc", "logloss"}]`` in ``.points``."""
    import keras

    from rocket_ctr.train.evaluation import evaluate

    class Day3Curve(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.points, self.step, self.epoch = [], 0, 0

        def evaluate(self):
            if self.points and self.points[-1]["steps"] == self.step:
                return
            light = evaluate(trainer.model, day3, trainer.spec)["light"]
            self.points.append({"steps": self.step, "epoch": self.epoch,
                                **{k: light[k] for k in ("gauc", "auc", "logloss")}})

        def on_train_begin(self, logs=None):
            self.step = int((logs or {}).get("global_step", 0))
            self.evaluate()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            reached = target is not None and steps_to(self.points, target) is not None
            if every and self.step % every == 0 and not reached:
                self.evaluate()

        def on_epoch_end(self, epoch, logs=None):
            self.evaluate()

    return Day3Curve()


def scratch_target(curve: list[dict]) -> float:
    """The scratch run's best day-3 GAUC after step 0 (its random start), less the tolerance."""
    return max(p["gauc"] for p in curve if p["gauc"] is not None and p["steps"]) - TOLERANCE


def steps_to(curve: list[dict], target: float) -> int | None:
    return next((point["steps"] for point in curve if point["gauc"] is not None and point["gauc"] >= target), None)


def train(run_dir: Path, data: Path, day3: Path | None, config, warm_start=None, optimizer: bool = True,
          every: int = 0, target: float | None = None) -> list[dict]:
    """Trains ``run_dir``; with ``day3``: a fresh run (a partial one is started over) whose
    day-3 curve is returned."""
    from rocket_ctr.train.trainer import Trainer

    if day3 is None:
        Trainer(run_dir, data, None, config, verbose=0).fit()
        return []
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = Trainer(run_dir, data, None, config, verbose=0, warm_start=warm_start, warm_start_optimizer=optimizer)
    curve = day3_curve_callback(trainer, day3, every, target)
    trainer.callbacks.append(curve)
    trainer.fit()
    return curve.points


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_warm_start"))
    parser.add_argument("--rows", type=int, default=600_000, help="rows over the three days")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every run")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="training steps between day-3 evaluations of a day-2 run (0: epoch ends only)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--small-model", action="store_true", help="tiny widths (a smoke test of the script)")
    args = parser.parse_args(argv)

    from experiment_results import lines_of, provenance, unjoined_note
    from recipes import rocket_config
    from rocket_ctr.datagen.synthetic import generate

    sizes = {"rows": args.rows, "users": args.users, "items": args.items, "epochs": args.epochs,
             "eval_every": args.eval_every, "batch_size": args.batch_size, "small_model": args.small_model}
    work = args.work / "_".join(f"{k}{v}" for k, v in sizes.items())
    log = args.work / f"log_rows{args.rows}_users{args.users}_items{args.items}"
    if not (log / "params.json").is_file() or not json.loads((log / "params.json").read_text()).get("complete"):
        generate(log, n_rows=args.rows, n_users=args.users, n_items=args.items, days=3, seed=1234)
    day1, day2, day3 = (log / f"day-0{d}" for d in (1, 2, 3))
    results_path = work / "results.jsonl"
    name = "warm start, small model" if args.small_model else "warm start"
    lines = list(map(json.loads, results_path.read_text().splitlines())) if results_path.exists() else []
    done = {(r["seed"], r["arm"]): r for r in lines_of(lines, FAMILY, name, epochs=args.epochs,
                                                        batch_size=args.batch_size)}
    note = unjoined_note(lines)
    if note:
        print(note, flush=True)
    work.mkdir(parents=True, exist_ok=True)

    for seed in args.seeds:
        settings = dict(epochs=args.epochs, batch_size=args.batch_size, seed=seed)
        config = rocket_config(FAMILY, name, **settings)
        day1_run = work / f"seed{seed}" / "day1"
        if not (day1_run / "metrics.json").exists() and any((seed, arm) not in done for arm in ARMS):
            train(day1_run, day1, None, config)
        for arm in ARMS:
            if (seed, arm) in done:
                continue
            warm = None if arm == "scratch" else day1_run
            target = None if arm == "scratch" else scratch_target(done[(seed, "scratch")]["curve"])
            curve = train(work / f"seed{seed}" / arm, day2, day3, config, warm, optimizer=arm == "warm",
                          every=args.eval_every, target=target)
            done[(seed, arm)] = {"seed": seed, "arm": arm, "sizes": sizes, "curve": curve,
                                 **provenance(FAMILY, name, day2, **settings)}
            with results_path.open("a") as f:
                f.write(json.dumps(done[(seed, arm)]) + "\n")
            print(f"seed {seed} {arm}: day-3 GAUC at steps "
                  f"{[(p['steps'], round(p['gauc'], 4)) for p in curve]}", flush=True)

    rows, ratios = report(done, args.seeds)
    print(f"\n{'seed':>4} {'arm':<13} {'gauc@0':>7} {'best gauc':>9} {'final':>7} {'target':>7} "
          f"{'steps to target':>15} {'ratio':>6} {'resolution':>10}")
    for row in rows:
        print(f"{row['seed']:>4} {row['arm']:<13} {row['gauc_at_0']:>7.4f} {row['best']:>9.4f} {row['final']:>7.4f} "
              f"{row['target']:>7.4f} {str(row['steps']):>15} {fmt(row['ratio']):>6} {fmt(row['resolution']):>10}")
    for arm in ARMS[1:]:
        values = [r for r in ratios[arm] if r is not None]
        met = sum(r is not None and r <= 0.5 for r in ratios[arm])
        spread = f"{statistics.mean(values):.3f} +- {statistics.stdev(values) if len(values) > 1 else 0:.3f}" \
            if values else "-"
        print(f"{arm}: ratio {spread} over {len(values)} of {len(ratios[arm])} seeds reaching the target; "
              f"<= 0.5 for {met} of {len(ratios[arm])}")
    verdicts = [r is not None and r <= 0.5 for r in ratios["warm"]]
    print(f"\ngoal (warm reaches the scratch best GAUC - {TOLERANCE} in <= half the steps): "
          f"{'met' if all(verdicts) else 'NOT met'} for {sum(verdicts)} of {len(verdicts)} seeds; "
          f"results in {results_path}")
    return 0


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(done: dict, seeds) -> tuple[list[dict], dict]:
    """Per (seed, arm): day-3 GAUC at step 0, best, final, the target, steps to it, the ratio to
    scratch's steps and the step resolution as a share of them."""
    rows, ratios = [], {arm: [] for arm in ARMS}
    for seed in seeds:
        scratch = done[(seed, "scratch")]["curve"]
        target = scratch_target(scratch)
        base_steps = steps_to(scratch[1:], target)  # after its random start, as the target
        every = done[(seed, "scratch")]["sizes"]["eval_every"]
        for arm in ARMS:
            curve = done[(seed, arm)]["curve"]
            steps = base_steps if arm == "scratch" else steps_to(curve, target)
            ratio = steps / base_steps if steps is not None and base_steps else None
            ratios[arm].append(ratio)
            gaucs = [p["gauc"] for p in curve if p["gauc"] is not None]
            rows.append({"seed": seed, "arm": arm, "gauc_at_0": curve[0]["gauc"], "best": max(gaucs),
                         "final": curve[-1]["gauc"], "target": target, "steps": steps, "ratio": ratio,
                         "resolution": every / base_steps if every and base_steps else None})
    return rows, ratios


if __name__ == "__main__":
    sys.exit(main())
