"""``rocket-ctr predict --processes K``: K local processes, one row-range shard each, one progress bar.

The children (``predict --num-shards K --shard-index i``) write into a hidden staging folder
inside OUT and report their rows on stdout; when all K succeeded, OUT's old results are replaced
(``--overwrite``) and the parts moved in. A failed child stops the others and leaves OUT as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def child_command(args, shard_index: int, out: Path, threads: int) -> list[str]:
    """The ``rocket-ctr predict`` command line of one shard."""
    source = ["--run-dir", str(args.run_dir)] if args.run_dir else ["--model", str(args.model)]
    return [sys.executable, "-m", "rocket_ctr.pipelines.cli", "predict", *source, "--data", str(args.data),
            "--out", str(out), "--num-shards", str(args.processes), "--shard-index", str(shard_index),
            "--batch-size", str(args.batch_size), "--rows-per-file", str(args.rows_per_file),
            "--booster" if args.booster else "--no-booster", "--xla" if args.xla else "--no-xla",
            "--threads", str(threads), "--no-progress", "--progress-lines"]


def _count(process, done: list, index: int) -> None:
    for line in process.stdout:
        if line.startswith("progress "):
            done[index] += int(line.split()[1])


def run_processes(args) -> int:
    from rocket_ctr.io.log_gate import resolve_paths
    from rocket_ctr.io.row_ranges import file_fragments
    from rocket_ctr.progress import Progress
    from rocket_ctr.scoring.prediction_output import check_out_dir, conflicting_results

    check_out_dir(args.out, overwrite=args.overwrite)
    total = sum(f.metadata.num_rows for f in file_fragments(resolve_paths(args.data)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-processes-", dir=out))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.processes)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start, done = time.perf_counter(), [0] * args.processes
    children = [subprocess.Popen(child_command(args, i, staging, threads), stdout=subprocess.PIPE, text=True, env=env)
                for i in range(args.processes)]
    readers = [threading.Thread(target=_count, args=(c, done, i), daemon=True) for i, c in enumerate(children)]
    for reader in readers:
        reader.start()
    bar = Progress(total, enabled=args.progress)
    try:
        failed = None
        while failed is None and any(c.poll() is None for c in children):
            failed = next((c for c in children if c.poll() not in (None, 0)), None)
            bar.update(sum(done) - bar.done)
            time.sleep(0.2)
        failed = failed or next((c for c in children if c.returncode != 0), None)
        if failed is not None:
            return failed.returncode if failed.returncode > 0 else 1  # the child printed its error line
        for reader in readers:
            reader.join(5)
        bar.update(sum(done) - bar.done)
        bar.close()
        for old in conflicting_results(out):
            old.unlink()  # --overwrite (checked at start)
        for path in sorted(staging.iterdir()):
            if path.is_file():
                os.replace(path, out / path.name)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(30)
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - start
    shards = [json.loads(p.read_text()) for p in sorted(out.glob(f"_predict-*-of-{args.processes:05d}.json"))]
    rows = sum(s["rows"] for s in shards)
    per_process = ", ".join(f"{s['rows_per_second']:,.0f}" for s in shards)
    print(f"scored {rows:,} rows with {args.processes} processes in {seconds:.1f} s: {rows / seconds:,.0f} rows/s "
          f"(start-up included; per process: {per_process} rows/s)")
    print(f"  {sum(len(s['files']) for s in shards)} part file(s) in {out}/")
    return 0
