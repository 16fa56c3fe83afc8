"""Distributed training on one box: throughput of 1 process vs N workers, and memory per worker
against the size of the embedding table (every MultiWorkerMirrored worker holds a full replica).

    .venv/bin/python benchmarks/bench_distributed.py throughput [--rows 200000] [--workers 2]
    .venv/bin/python benchmarks/bench_distributed.py memory [--buckets 1000000,8000000,24000000]

``throughput``: examples/s (the trainer's ``train_examples_per_s``: training steps only, no
evaluation) of ``rocket-ctr train`` in one process with the global batch vs ``launch-local``
with N workers × the per-worker batch. ``memory``: peak resident memory of each worker process
while 2 workers train one epoch with ``item_id`` hashed into B embedding rows. Prints JSON lines.
All processes share this machine's cores: with 2 cores, N workers cannot be faster than one
process that already uses both (see README, "Training on a cluster").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rocket_ctr.pipelines.cli"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def generate(out: Path, rows: int, files: int) -> Path:
    subprocess.run(CLI + ["generate", "--out", str(out), "--rows", str(rows), "--rows-per-file",
                          str(-(-int(rows * 0.9) // files))], check=True, env=ENV, stdout=subprocess.DEVNULL)
    return out


def peak_rss_mib(pids: list[int]) -> dict[int, float]:
    """VmHWM (peak resident set) of each live process, in MiB."""
    peaks = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return peaks


def run_launch(args: list[str], timeout: float = 1800) -> tuple[int, dict, str]:
    """Runs launch-local, sampling the workers' peak memory until they exit."""
    process = subprocess.Popen(CLI + ["launch-local", *args], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines, peaks = [], {}
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        pids = [int(l.split("(pid ")[1].split(")")[0]) for l in list(lines) if "(pid " in l]
        for pid, mib in peak_rss_mib(pids).items():
            peaks[pid] = max(mib, peaks.get(pid, 0.0))
        time.sleep(0.5)
    if process.poll() is None:
        process.terminate()
        process.wait(30)
    reader.join(10)
    return process.returncode, peaks, "".join(lines)


def throughput(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    log = generate(work / "log", args.rows, files=2 * args.workers)
    common = ["--epochs", str(args.epochs), "--quiet"]
    started = time.perf_counter()
    subprocess.run(CLI + ["train", "--train", str(log / "train"), "--run-dir", str(work / "single"),
                          "--batch-size", str(args.batch_size * args.workers), *common],
                   check=True, env=ENV, stdout=subprocess.DEVNULL)
    single_wall = time.perf_counter() - started
    single = json.loads((work / "single" / "metrics.json").read_text())
    started = time.perf_counter()
    code, _, output = run_launch([f"--workers={args.workers}", "--max-restarts=0", "--", "--train", str(log / "train"),
                                  "--run-dir", str(work / "multi"), "--batch-size", str(args.batch_size), *common])
    multi_wall = time.perf_counter() - started
    if code != 0:
        sys.exit(output[-3000:])
    multi = json.loads((work / "multi" / "metrics.json").read_text())
    print(json.dumps({"rows": args.rows, "epochs": args.epochs, "global_batch": args.batch_size * args.workers,
                      "single_process_examples_per_s": round(single["train_examples_per_s"]),
                      f"{args.workers}_workers_examples_per_s": round(multi["train_examples_per_s"]),
                      "single_wall_s": round(single_wall, 1), "multi_wall_s": round(multi_wall, 1),
                      "cores": os.cpu_count()}), flush=True)


def memory(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    log = generate(work / "log", args.rows, files=2)
    spec = json.loads((log / "feature_spec.json").read_text())
    for buckets in (int(b) for b in args.buckets.split(",")):
        for feature in spec["sequence_features"]:
            if feature["name"] == "item_id":
                feature["buckets"], feature["vocabulary"] = buckets, None
        spec_path = work / f"spec_{buckets}.json"
        spec_path.write_text(json.dumps(spec))
        started = time.perf_counter()
        code, peaks, output = run_launch(["--workers=2", "--max-restarts=0", "--", "--train", str(log / "train"),
                                          "--run-dir", str(work / f"run_{buckets}"), "--spec", str(spec_path),
                                          "--epochs", "1", "--embedding-dim", str(args.embedding_dim),
                                          "--checkpoint-every", "100000", "--quiet"])
        table_mib = buckets * args.embedding_dim * 4 / 2 ** 20
        print(json.dumps({"item_rows": buckets, "embedding_dim": args.embedding_dim,
                          "table_mib": round(table_mib), "table_plus_adam_slots_mib": round(3 * table_mib),
                          "trained": code == 0, "wall_s": round(time.perf_counter() - started, 1),
                          "peak_rss_mib_per_worker": sorted(round(v) for v in peaks.values())}), flush=True)
        if code != 0:
            print(output[-2000:], file=sys.stderr)
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--rows", type=int, default=200_000)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=256, help="per worker")
    t.add_argument("--epochs", type=int, default=1)
    m = sub.add_parser("memory")
    m.add_argument("--rows", type=int, default=20_000)
    m.add_argument("--buckets", default="1000000,8000000,24000000")
    m.add_argument("--embedding-dim", type=int, default=18)
    args = parser.parse_args()
    throughput(args) if args.what == "throughput" else memory(args)


if __name__ == "__main__":
    main()
