"""Training throughput (examples/s): rocket_ctr's ``rocket`` mode vs DeepCTR's reference Keras DIN.

    .venv/bin/python benchmarks/bench_train_throughput.py                       # 300k rows, all cores
    .venv/bin/python benchmarks/bench_train_throughput.py --rows 300000 --cores 2
    .venv/bin/python benchmarks/bench_train_throughput.py --rows 60000 --skip-deepctr

Every system trains one epoch on the same generated log (``<work-dir>/log_<rows>/train``, made by
``rocket_ctr.datagen.synthetic.generate(..., seed=0)`` once and reused), batch 256, embedding
dim 18, attention MLP 80-40, DNN / light tower 200-80, Adam 1e-3, each in a fresh child process
(pinned to the same ``--cores`` cores when given, before TensorFlow starts), one after another:

- ``deepctr DIN``: ``benchmarks/deepctr_din.py`` in its own venv (``--deepctr-venv``, created
  with ``python3.11 -m venv`` + ``pip install deepctr tf-keras==2.21.* tensorflow==2.21.* pyarrow``
  when missing) under ``TF_USE_LEGACY_KERAS=1``. Raw ids are mapped to dense indices and
  histories padded to 50 before the timed region; ``model.fit(x, y, batch_size=256, epochs=1)``.
- ``rocket``: ``rocket_ctr.train.trainer.Trainer`` with ``RocketConfig(mode="rocket", ...)``: light
  tower + booster trained jointly (eq. 1), the full training path (Parquet streaming, in-graph id
  hashing, mixed-length batches whose attention skips padding, checkpoints every 500 steps).
- ``base``: the same with ``mode="base"`` (light tower alone), for reference.
- ``base+dot`` (any mode + ``+dot``, ``+mean``, ``+din``, ``+shared``): the light tower's interest extractor.
- ``base+buckets`` (any mode + ``+buckets``): the same with ``length_buckets=True`` (rows grouped by
  history length into padded widths).
- ``rocket+afterlaunch``: the booster kept off the shared embeddings until the warm-up launches
  it, λ = 1.
- ``base+stringhash`` (any mode + ``+stringhash``): ``FeatureSpec.id_hash="string"`` (each int64
  id's decimal text through farmhash) instead of splitmix64.

Every mode is a recipe of ``benchmarks/recipes.py`` (family ``throughput``); each result carries
its resolved config.

Measured:
- ``examples/s`` (the headline, used for the ratio): steady state. DeepCTR: a Keras callback
  stamps every batch end; examples of batches after the first ``--warmup-steps`` (20) divided by
  the time from the end of batch 20 to the end of the last batch. rocket_ctr: the Trainer's step
  function is wrapped (on the instance, nothing in the package changes) to stamp every step end
  after its outputs are fetched (the Trainer fetches them every step anyway); the same count
  after the first 20 steps, and in addition every step that was the first of its history width
  is left out (the step that traced + XLA-compiled that bucket's shape; length buckets appear at
  random times in the shuffled epoch). Each counted interval runs from one step end to the next,
  so it includes waiting for the input pipeline and the loop's own Python work.
- ``whole-epoch examples/s``: DeepCTR: rows / wall time of ``model.fit``; rocket_ctr: the
  Trainer's own ``train_examples_per_s`` (metrics.json): examples / wall time of the epoch loop,
  compiles and checkpoint saves included. Both include their warm-up; they depend on ``--rows``.
- for rocket_ctr, the share of the steady time spent between steps (input pipeline wait +
  Python loop overhead) rather than inside the compiled step.

Goal: rocket >= 2x DeepCTR DIN's examples/s on 2 cores (``--cores 2``, quiet machine).
``--repeats R`` runs each system R times and keeps the best steady examples/s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recipes import FAMILIES, recipe, resolve, rocket_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
DEEPCTR_SCRIPT = HERE / "deepctr_din.py"
DEEPCTR_PACKAGES = ["deepctr", "tf-keras==2.21.*", "tensorflow==2.21.*", "pyarrow"]
FAMILY = "throughput"  # the recipes of benchmarks/recipes.py this script times
# what the booster may cost in training: rocket (light + booster) at this share of DeepCTR DIN's examples/s or more
TRAINING_BAR = 0.7
BATCH, EMBEDDING_DIM = (FAMILIES[FAMILY][0][k] for k in ("batch_size", "embedding_dim"))  # DeepCTR DIN's too


# ----- shared set-up ---------------------------------------------------------------------------
def ensure_log(work_dir: Path, n_rows: int) -> Path:
    """A generated log of ``n_rows`` rows in ``work_dir/log_<n_rows>`` (generated once, then reused)."""
    folder = work_dir / f"log_{n_rows}"
    params = folder / "params.json"
    if params.is_file():
        record = json.loads(params.read_text())
        if record.get("complete") and record.get("config", {}).get("n_rows") == n_rows:
            print(f"reusing {folder}", flush=True)
            return folder
    from rocket_ctr.datagen.synthetic import generate

    print(f"generating {n_rows:,} rows into {folder} ...", flush=True)
    summary = generate(folder, n_rows=n_rows, seed=0)
    print(f"  done in {summary['seconds']:.1f} s ({summary['rows']})", flush=True)
    return folder


def ensure_deepctr_venv(venv: Path) -> tuple[Path | None, str]:
    """The venv's python (created and installed when missing), or (None, why it is unusable)."""
    python = venv / "bin" / "python"
    marker = venv / ".deepctr_bench_ok"
    if python.exists() and marker.exists():
        return python, "existing venv"
    try:
        if not python.exists():
            base = shutil.which("python3.11") or sys.executable
            print(f"creating DeepCTR venv {venv} with {base} (first run: a few minutes) ...", flush=True)
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
        print(f"pip install {' '.join(DEEPCTR_PACKAGES)} into {venv} ...", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *DEEPCTR_PACKAGES], check=True)
        check = subprocess.run([str(python), str(DEEPCTR_SCRIPT), "--check-import"],
                               capture_output=True, text=True, env=_deepctr_env())
        if check.returncode:
            return None, f"deepctr does not import in {venv}:\n{check.stderr[-2000:]}"
    except (OSError, subprocess.CalledProcessError) as err:
        return None, f"cannot set up {venv}: {err}"
    marker.write_text(" ".join(DEEPCTR_PACKAGES) + "\n")
    return python, "created"


def cpu_model() -> str:
    """The CPU's model name and widest vector extension (ratios against DeepCTR DIN differ between CPUs)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    vector = next((v for v in ("avx512f", "avx2", "avx") if v in flags), "no avx")
    return f"{name} ({vector})"


def _deepctr_env() -> dict:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)  # keep the main venv's packages out of the DeepCTR venv
    return env


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def run_child(command: list[str], env: dict | None = None, label: str = "") -> dict:
    print(f"running {label} ...", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        tail = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                         if not line.startswith(("I0000", "WARNING: All log")))[-4000:]
        raise RuntimeError(f"{label} failed (exit {done.returncode}):\n{tail}")
    result = _last_json(done.stdout)
    print(f"  {result['examples_per_s']:,.0f} examples/s steady ({time.perf_counter() - started:.0f} s in all)",
          flush=True)
    return result


# ----- rocket_ctr child --------------------------------------------------------------------------
def train_rocket_ctr(mode: str, train_paths: Path, work_dir: Path, warmup: int) -> dict:
    """Child process: one epoch of rocket_ctr's Trainer, step ends stamped; prints a JSON line."""
    import numpy as np
    import tensorflow as tf

    from rocket_ctr.train.trainer import Trainer

    config = rocket_config(FAMILY, mode)
    spec = None
    if recipe(FAMILY, mode).spec:
        from rocket_ctr.io.log_gate import find_feature_spec

        spec = dataclasses.replace(find_feature_spec(str(train_paths)), **recipe(FAMILY, mode).spec)
    (work_dir / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work_dir / "runs"))
    try:
        trainer = Trainer(run_dir, str(train_paths), None, config, spec, verbose=0)
        history_column = trainer.spec.history_columns[0]
        stamps = []  # (start, end, examples, history width) per step

        original = getattr(trainer, "_step_function", None)  # wrapped on this instance only

        def timed_step_function(stage, *args, **kwargs):
            step = original(stage, *args, **kwargs)

            def timed(rows, label, *rest):  # rest: the sample weights, where the step takes them
                start = time.perf_counter()
                logs = {k: np.asarray(v) for k, v in step(rows, label, *rest).items()}  # waits for the step
                stamps.append((start, time.perf_counter(), int(label.shape[0]), int(rows[history_column].shape[1])))
                return logs
            return timed

        if callable(original):
            trainer._step_function = timed_step_function
        else:
            print("Trainer has no _step_function: reporting its whole-epoch number only", file=sys.stderr)
        started = time.perf_counter()
        metrics = trainer.fit()
        fit_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    seen, first_of_width, steady = set(), [], []
    for i, (_, _, _, width) in enumerate(stamps):
        first_of_width.append(width not in seen)
        seen.add(width)
        if i >= max(warmup, 1) and not first_of_width[i]:
            steady.append(i)
    if stamps and not steady:
        raise SystemExit(f"only {len(stamps)} steps: use more --rows")
    seconds = sum(stamps[i][1] - stamps[i - 1][1] for i in steady)
    inside = sum(stamps[i][1] - stamps[i][0] for i in steady)
    examples = sum(stamps[i][2] for i in steady)
    widths = sorted(seen)
    return {
        "system": f"rocket_ctr {mode}",
        # without stamps (Trainer changed shape) the whole-epoch number stands in, flagged below
        "examples_per_s": examples / seconds if stamps else metrics.get("train_examples_per_s"),
        "steady_measured": bool(stamps),
        "fit_examples_per_s": metrics.get("train_examples_per_s"),
        "steady_examples": examples, "steady_seconds": seconds, "steady_steps": len(steady),
        "between_steps_share": 1 - inside / seconds if stamps else None,
        "steps": len(stamps), "warmup_steps": warmup,
        "compile_steps": [{"step": i, "width": stamps[i][3], "seconds": stamps[i][1] - stamps[i][0]}
                          for i, first in enumerate(first_of_width) if first],
        "history_widths": widths,
        "width_counts": {w: sum(1 for s in stamps if s[3] == w) for w in widths},
        "fit_seconds": fit_seconds, "cores": len(os.sched_getaffinity(0)),
        "params": int(sum(int(tf.size(v)) for v in trainer.model.trainable_variables)),
        "versions": {"tensorflow": tf.__version__, "keras": __import__("keras").__version__},
        "config": config.to_dict(),
        "recipe": mode, "family": FAMILY, "resolved_config": resolve(FAMILY, mode),
    }


# ----- parent --------------------------------------------------------------------------------------
def best_of(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: r["examples_per_s"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the generated log (90%% train)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rocket_train_bench"),
                        help="where the log is generated (and reused) and run dirs are made")
    parser.add_argument("--deepctr-venv", type=Path, default=Path("/tmp/deepctr-venv"))
    parser.add_argument("--skip-deepctr", action="store_true", help="time rocket_ctr only")
    parser.add_argument("--cores", type=int, default=None, help="pin every process to the first N allowed cores")
    parser.add_argument("--modes", default="rocket,base", help="rocket_ctr modes to time (comma-separated)")
    parser.add_argument("--warmup-steps", type=int, default=20, help="first steps left out of the steady timing")
    parser.add_argument("--repeats", type=int, default=1, help="runs per system; the best steady examples/s counts")
    parser.add_argument("--json", type=Path, default=None, help="also write every result to this file")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_train", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cores:  # before any TensorFlow: thread pools size themselves to the affinity; children inherit it
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    if args._child:
        print(json.dumps(train_rocket_ctr(args._child, args._train, args.work_dir, args.warmup_steps), default=str))
        return 0

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        try:
            resolve(FAMILY, mode)
        except (KeyError, ValueError) as err:
            parser.error(f"--modes {mode}: {err.args[0] if err.args else err}")
    cores = sorted(os.sched_getaffinity(0))
    cpu = cpu_model()
    print(f"CPU cores: {len(cores)} {cores} of {cpu}  (load average {os.getloadavg()[0]:.1f}: other processes "
          f"share them)", flush=True)
    folder = ensure_log(args.work_dir, args.rows)
    train = folder / "train"
    results, skipped = {}, None

    if not args.skip_deepctr:
        python, how = ensure_deepctr_venv(args.deepctr_venv)
        if python is None:
            skipped = how
            print(f"DeepCTR DIN skipped: {how}", flush=True)
        else:
            command = [str(python), str(DEEPCTR_SCRIPT), "--data", str(train), "--batch-size", str(BATCH),
                       "--embedding-dim", str(EMBEDDING_DIM), "--warmup-steps", str(args.warmup_steps)]
            try:
                results["deepctr DIN"] = best_of([run_child(command, _deepctr_env(), f"DeepCTR DIN ({how})")
                                                  for _ in range(args.repeats)])
            except RuntimeError as err:
                skipped = str(err)
                print(f"DeepCTR DIN failed: {err}", flush=True)

    for mode in modes:
        command = [sys.executable, os.path.abspath(__file__), "--_child", mode, "--_train", str(train),
                   "--work-dir", str(args.work_dir), "--warmup-steps", str(args.warmup_steps)]
        results[f"rocket_ctr {mode}"] = best_of([run_child(command, label=f"rocket_ctr {mode}")
                                                 for _ in range(args.repeats)])

    reference = results.get("deepctr DIN", {}).get("examples_per_s")
    rows_trained = max((r.get("rows") or r.get("steps", 0) * BATCH) for r in results.values()) if results else 0
    print(f"\nTraining throughput, 1 epoch over ~{rows_trained:,} training rows of {folder}, batch {BATCH}, "
          f"{len(cores)} core(s), best of {args.repeats}")
    print(f"{'system':<20} {'examples/s':>12} {'vs DeepCTR DIN':>15} {'whole-epoch ex/s':>17} {'steps':>6}")
    for name, r in results.items():
        ratio = f"{r['examples_per_s'] / reference:.2f}x" if reference else "n/a"
        whole = f"{r['fit_examples_per_s']:,.0f}" if r.get("fit_examples_per_s") else "n/a"
        print(f"{name:<20} {r['examples_per_s']:>12,.0f} {ratio:>15} {whole:>17} {r['steps']:>6}")
    if skipped:
        print(f"(DeepCTR DIN not measured: {skipped.splitlines()[0]})")
    for name, r in results.items():
        if name.startswith("rocket_ctr") and not r.get("steady_measured", True):
            print(f"  {name}: NOT steady state (could not stamp steps): examples/s is the whole-epoch number")
        elif name.startswith("rocket_ctr"):
            compiles = ", ".join(f"w{c['width']}@{c['step']}:{c['seconds']:.1f}s" for c in r["compile_steps"])
            print(f"  {name}: {r['between_steps_share']:.0%} of steady time between steps (input wait + loop); "
                  f"{r['steady_steps']} steady steps; first step per history width (excluded): {compiles}")
    if reference and "rocket_ctr rocket" in results:
        ratio = results["rocket_ctr rocket"]["examples_per_s"] / reference
        print(f"bar rocket >= {TRAINING_BAR}x DeepCTR DIN: {'met' if ratio >= TRAINING_BAR else 'NOT met'} "
              f"({ratio:.2f}x on {len(cores)} core(s); the bar is for 2 cores on a quiet machine)")

    print("\nconfigs:")
    if "deepctr DIN" in results:
        r = results["deepctr DIN"]
        print(f"  deepctr DIN: {json.dumps(r['config'])}")
        print(f"    versions {r['versions']}, vocabularies {r['vocabulary_sizes']}, {r['params']:,} params, "
              f"data prep (untimed) {r['prep_seconds']:.1f} s")
    for name, r in results.items():
        if name.startswith("rocket_ctr"):
            print(f"  {name}: {json.dumps(r['config'])}")
            print(f"    versions {r['versions']}, {r['params']:,} trainable params, history widths {r['width_counts']}")
    if args.json:
        args.json.write_text(json.dumps({"cores": len(cores), "cpu": cpu, "rows": args.rows, "results": results,
                                         "deepctr_skipped": skipped}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
