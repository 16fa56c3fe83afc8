"""One-seed screens of training flags on the real logs, before a 3-seed experiment decides anything.

A plan is a JSON-lines file, one run per line: ``{"name": ..., "log": ..., "seed": 0, "flags": [...]}``
(``flags``: ``rocket-ctr train`` flags on top of the defaults of the commit that runs it; ``log``: a
real log's name, or any name with ``"data"``: a folder holding ``train`` and ``test``, e.g. a
generated log). Each
finished run appends one line to the results file with its light and booster test metrics, its
training examples/s, its kept epoch and its resolved config (the run dir's ``config.json``); a line
already there (same name, log and seed) is not run again, so a stopped screen resumes.

    .venv/bin/python benchmarks/screen_flags.py PLAN.jsonl RESULTS.jsonl [--work-dir /tmp/screen]

The booster screens of docs/results/boosters.md are in ``benchmarks/results/booster_screen.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from experiment_real_logs import LOGS, train_and_read  # noqa: E402

from experiment_results import provenance  # noqa: E402


def run(item: dict, data_root: Path, work: Path, cli: str, keep_checkpoints: bool = False) -> dict:
    """Trains one planned run; returns its results line (the run dir stays, without its checkpoints
    unless ``keep_checkpoints``: a screen of dozens of runs would otherwise fill the disk)."""
    key = f"{item['name']}|{item['log']}|{item['seed']}"
    data = Path(item["data"]) if "data" in item else data_root / LOGS[item["log"]]
    run_dir = work / key.replace("|", "_").replace(" ", "_")
    shutil.rmtree(run_dir, ignore_errors=True)
    train, test = ((data / "train", data / "test") if "data" in item else
                   (data / "train.parquet", data / "test.parquet"))
    command = [cli, "train", "--train", str(train), "--eval", str(test),
               "--run-dir", str(run_dir), "--seed", str(item["seed"]), "--quiet", *item["flags"]]
    metrics, config, seconds = train_and_read(command, run_dir)
    if not keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {"key": key, **item, "seconds": seconds, "light": metrics.get("light"),
            "booster": metrics.get("booster"), "ex_per_s": metrics.get("train_examples_per_s"),
            "best_epoch": metrics.get("best_epoch"),
            **provenance("screen", item["name"], data, config={"system": "rocket_ctr", "config": config},
                         epochs=config["training"]["epochs"], seed=item["seed"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/screen"))
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cli", default=str(ROOT / ".venv" / "bin" / "rocket-ctr"))
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run dir's checkpoints")
    args = parser.parse_args()
    plan = [json.loads(line) for line in args.plan.read_text().splitlines() if line.strip()]
    done = ({json.loads(line)["key"] for line in args.results.read_text().splitlines() if line.strip()}
            if args.results.exists() else set())
    for item in plan:
        if f"{item['name']}|{item['log']}|{item['seed']}" in done:
            continue
        line = run(item, args.data_root, args.work_dir, args.cli, args.keep_checkpoints)
        with args.results.open("a") as out:
            out.write(json.dumps(line) + "\n")
        gauc = {tower: (line[tower] or {}).get("gauc") for tower in ("light", "booster")}
        print(line["key"], gauc, f"{line['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
