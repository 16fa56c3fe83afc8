"""Numeric and multi-hot features: does a model that reads them beat one that ignores them?

    .venv/bin/python benchmarks/bench_feature_types.py [--rows 400000] [--strength 0.5] [--epochs 2]
        [--seeds 0 1 2] [--work-dir /tmp/rocket_feature_types] [--table-only]

Per seed, one generated log (``rocket-ctr generate --feature-strength S``) whose click signal
lives partly in a numeric column (``price``, some missing) and a multi-hot column (``tags``), each
carrying a logit std of S beside the usual history, profile and popularity signals. Two rocket
runs on it, the library's ``Trainer`` with the defaults except ``--epochs`` and the seed:

* ``with``: the generated feature spec (price bucketised, tags mean-pooled),
* ``without``: the same spec without the numeric and multi-hot features.

Reported: the test split's GAUC and AUC of both towers (``metrics.json``), per seed and as mean ±
std over seeds, and the light export answering a 1 x N request with the new inputs (``with``
runs: N = 100 candidates of one test user). ``with`` and ``without`` are recipes of
``benchmarks/recipes.py`` (family ``feature types``). Results are appended to ``WORK/results.jsonl``
run by run, each line with the resolved config it trained; a re-run skips the runs whose config,
seed and log are there and prints the table of the lines that trained what each variant resolves
to today (lines without a stored config are left out).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from experiment_results import append, finished, lines_of, load, provenance, unjoined_note
from recipes import FEATURE_TYPES, recipe, recipe_key, resolve, rocket_config

FAMILY = "feature types"  # the recipes of benchmarks/recipes.py this script runs


def generate_log(work: Path, rows: int, strength: float, seed: int) -> Path:
    from rocket_ctr.datagen.synthetic import generate

    log = work / f"log_s{seed}_f{strength}_n{rows}"
    params = log / "params.json"
    if not (params.exists() and json.loads(params.read_text()).get("complete")):
        generate(log, n_rows=rows, seed=seed, feature_strength=strength)
    return log


def run(log: Path, run_dir: Path, variant: str, epochs: int, seed: int) -> dict:
    """Trains one variant and returns its eval metrics (and, for ``with``, a served 1 x N request)."""
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.train.trainer import Trainer

    spec = FeatureSpec.load(log / "feature_spec.json")
    edits = recipe(FAMILY, variant).spec
    if edits:
        spec = dataclasses.replace(spec, **{k: tuple(v) if isinstance(v, list) else v for k, v in edits.items()})
    started = time.perf_counter()
    metrics = Trainer(run_dir, log / "train", log / "test", rocket_config(FAMILY, variant, epochs=epochs, seed=seed),
                      spec, verbose=0).fit()
    keep = ("auc", "gauc", "logloss")
    result = {tower: {k: metrics[tower][k] for k in keep} for tower in ("light", "booster") if tower in metrics}
    result["seconds"] = time.perf_counter() - started
    if variant == "with":
        result["served_1xN"] = serve_one_request(run_dir, log)
    return result


def serve_one_request(run_dir: Path, log: Path, n: int = 100) -> dict:
    """Exports the light tower and sends it one user's request with N test candidates."""
    import numpy as np
    import tensorflow as tf

    from rocket_ctr.export.rows import one_user_request, sample_rows
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.features.signatures import OUTPUT, SERVING_DEFAULT
    from rocket_ctr.train.run_dir import restore_model

    model, spec, _ = restore_model(run_dir)
    result = export_light(model, spec, run_dir / "export", jit_compile=False, data=log / "test")
    rows = sample_rows(spec.served(), log / "test", n=n)
    request = one_user_request(spec.served(), rows, 0, np.arange(n))
    served = tf.saved_model.load(str(result.path)).signatures[SERVING_DEFAULT]
    probabilities = served(**{k: tf.constant(v) for k, v in request.items()})[OUTPUT].numpy()
    return {"inputs": sorted(request), "n": int(len(probabilities)), "finite": bool(np.isfinite(probabilities).all()),
            "verified_max_abs_diff": result.max_abs_diff}


def table(records, seeds: list, epochs: int) -> str:
    """GAUC per variant, tower and seed (the last line per seed that trained what the variant
    resolves to today with ``epochs``), and mean ± std over seeds."""
    import numpy as np

    records = list(records)
    lines = [f"{'variant':<10}{'tower':<9}" + "".join(f"{'seed ' + str(s):>10}" for s in seeds) + f"{'mean ± std':>20}"]
    for variant in FEATURE_TYPES:
        by_seed = {r["seed"]: r for r in lines_of(records, FAMILY, variant, epochs=epochs)}
        for tower in ("light", "booster"):
            values = [by_seed.get(s, {}).get(tower, {}).get("gauc") for s in seeds]
            shown = "".join(f"{v:>10.4f}" if v is not None else f"{'-':>10}" for v in values)
            done = [v for v in values if v is not None]
            summary = f"{np.mean(done):.4f} ± {np.std(done):.4f}" if done else "-"
            lines.append(f"{variant:<10}{tower:<9}{shown}{summary:>20}")
    note = unjoined_note(records)
    return "GAUC on the test split\n" + "\n".join(lines) + (f"\n{note}" if note else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--strength", type=float, default=0.5, help="logit std of each of the price and tags signals")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rocket_feature_types"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results_path = args.work_dir / "results.jsonl"
    results = load(results_path)
    if not args.table_only:
        for seed in args.seeds:
            log = generate_log(args.work_dir, args.rows, args.strength, seed)
            for variant in FEATURE_TYPES:
                run_settings = {"epochs": args.epochs, "seed": seed}
                if finished(results.values(), FAMILY, variant, {"data": str(log)}, **run_settings):
                    continue
                run_dir = args.work_dir / f"run_{variant}_s{seed}_n{args.rows}"
                key = f"{variant}/{seed}|{log.name}|{recipe_key(resolve(FAMILY, variant, **run_settings))}"
                record = {"key": key, "rows": args.rows, "strength": args.strength,
                          **provenance(FAMILY, variant, log, **run_settings),
                          **run(log, run_dir, variant, args.epochs, seed)}
                append(results_path, results, record)
                print(f"{variant}/{seed}: light GAUC {record['light']['gauc']:.4f}", flush=True)
    shown = [r for r in results.values() if r.get("rows") == args.rows and r.get("strength") == args.strength]
    print(table(shown, args.seeds, args.epochs))


if __name__ == "__main__":
    main()
