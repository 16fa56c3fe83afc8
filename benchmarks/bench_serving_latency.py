"""Serving latency side by side: light tower, booster, gRPC/REST, DeepCTR DIN, FC layers only.

    .venv/bin/python benchmarks/bench_serving_latency.py                     # 500 requests per case
    .venv/bin/python benchmarks/bench_serving_latency.py --requests 300 --json /tmp/serving_latency.json
    .venv/bin/python benchmarks/bench_serving_latency.py --run-dir RUN --skip-deepctr

One run, one machine, one user x ``--candidates`` (200) candidates x ``--history`` (50) steps per
request, every case measured in alternating chunks (``--rounds`` rounds of ``--requests /
--rounds`` requests each, the order rotated every round) so background load falls on all alike:

1. ``light xla`` / ``light no-xla``: the light tower's SavedModel (``rocket_ctr.export.writer.
   export_light``, ``jit_compile`` on / off), loaded with ``tf.saved_model.load`` in this process,
   ``serving_default`` called with the request's tensors (built once): what TF Serving executes,
   without RPC.
2. ``booster xla`` / ``booster no-xla``: the same export with ``tower="booster"``
   (benchmarking only; the booster is never served).
3. ``gRPC`` / ``REST``: the light xla export behind the repo's TF-Serving-protocol test server
   (``rocket_ctr.serving.server``, a child process on loopback ports), through
   ``rocket_ctr.serving.client`` (``Predict`` / ``POST :predict``). End to end: serialisation,
   transport, the server's own work.
4. ``deepctr DIN``: DeepCTR's reference Keras DIN (same sizes: embedding 18, attention 80-40
   sigmoid, DNN 200-80; vocabularies of the log) saved as a SavedModel and loaded back in the
   DeepCTR venv (``benchmarks/deepctr_din_serving.py --serve-stdin``, a child process kept
   alive and told ``run K`` for each of its chunks, so it interleaves with the cases above).
   DeepCTR's DIN has no one-user-many-candidates input: its request is 200 rows with the user's
   profile and 50-step history repeated 200 times.
5. ``model only (row ids)``: bottom + tower of the in-memory model on already-mapped row ids in
   a ``tf.function`` (XLA on / off), the request's serving form ([1] user, [1, L] history, [N]
   candidates): the model's share of the in-process time (no id hashing, no signature wrapper).
6. ``FC layers only`` light / booster (XLA on / off): the towers' MLPs alone (the paper's Table 5 times
   are FC-layer inference times) on a precomputed x of shape [candidates, bottom width], in a
   ``tf.function`` (``jit_compile`` on / off), from ``rocket_ctr.train.run_dir.restore_model(run_dir)``.

Goals: light in-process p50 >= 3x faster than DeepCTR DIN's; booster / light p50 >= 3x
(full request and FC layers only; the paper's 23.2 vs 7.6 ms); gRPC adds <= 1 ms p50 over
in-process. Ratios use the p50 over all of a case's requests; the per-chunk median p50 is shown
too.

Without ``--run-dir`` a 200k-row log is generated (``rocket_ctr.datagen.synthetic.generate``,
seed 0) into ``--work-dir`` and a ``RocketConfig(epochs=1)`` run is trained on it there; both
are reused by later runs, as are the exports (``<work-dir>/exports/<run+checkpoint tag>/``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
DEEPCTR_SCRIPT = HERE / "deepctr_din_serving.py"
LOG_ROWS = 200_000
PREFIX = "@@ "  # answers of deepctr_din_serving.py --serve-stdin


# ----- set-up: log, run, exports ----------------------------------------------------------------
def ensure_run(work_dir: Path) -> tuple[Path, Path]:
    """(run dir, log dir): a generated 200k-row log and a 1-epoch rocket run, made once, reused."""
    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.datagen.synthetic import generate
    from rocket_ctr.train.trainer import Trainer

    log, run = work_dir / f"log_{LOG_ROWS}", work_dir / "run"
    params = log / "params.json"
    record = json.loads(params.read_text()) if params.is_file() else {}
    if record.get("complete") and record.get("config", {}).get("n_rows") == LOG_ROWS:
        print(f"reusing log {log}", flush=True)
    else:
        print(f"generating {LOG_ROWS:,} rows into {log} ...", flush=True)
        generate(log, n_rows=LOG_ROWS, seed=0)
    if (run / "metrics.json").is_file():
        print(f"reusing run {run}", flush=True)
    else:
        print(f"training RocketConfig(epochs=1) into {run} ...", flush=True)
        started = time.perf_counter()
        Trainer(run, str(log / "train"), str(log / "test"), RocketConfig(epochs=1), verbose=0).fit()
        print(f"  trained in {time.perf_counter() - started:.0f} s", flush=True)
    return run, log


def run_tag(run_dir: Path) -> str:
    """Names the exports of one run's latest checkpoint (a new checkpoint -> new exports)."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints")) or "none"
    index = Path(latest + ".index")
    stamp = index.stat().st_mtime_ns if index.exists() else 0
    return hashlib.sha1(f"{run_dir.resolve()}|{latest}|{stamp}".encode()).hexdigest()[:12]


def ensure_exports(model, run_dir: Path, work_dir: Path, eval_data) -> dict:
    """{"light xla": version dir, ...} for every tower of the run, XLA on and off (cached)."""
    from rocket_ctr.export.writer import export_light, resolve_export

    base = work_dir / "exports" / run_tag(run_dir)
    out = {}
    for tower in ("light", "booster"):
        if tower not in model.towers:
            print(f"  the run has no {tower} tower (mode {model.config.mode}): skipped", flush=True)
            continue
        for jit in (True, False):
            name = f"{tower} {'xla' if jit else 'no-xla'}"
            folder = base / name.replace(" ", "_")
            if (folder / "1" / "saved_model.pb").is_file():
                out[name] = resolve_export(folder / "1")
                continue
            started = time.perf_counter()
            result = export_light(model, model.spec, folder, 1, tower=tower, jit_compile=jit, data=eval_data)
            print(f"  exported {name} to {result.path} in {time.perf_counter() - started:.0f} s "
                  f"(verified, max |diff| {result.max_abs_diff:.1e})", flush=True)
            out[name] = result.path
    return out


# ----- cases: a name and chunk(k) -> per-request seconds -----------------------------------------
class Case:
    def __init__(self, backend: str, model: str, call=None, chunk=None, note: str = ""):
        self.backend, self.model, self.note = backend, model, note
        self._call, self._chunk = call, chunk
        self.chunks: list[list[float]] = []

    def run(self, k: int) -> list[float]:
        from rocket_ctr.serving.latency import timed

        return self._chunk(k) if self._chunk is not None else timed(self._call, k)[0]


def model_cases(model, n: int, history: int) -> list[Case]:
    """Bottom + tower on row indices (no id hashing, no signature wrapper): where the time goes.

    The request's form as the export's ``serving_default`` hands it to the model: user profile
    [1], history [1, L], hist_len [1], candidates [n], random in-range row indices.
    """
    import tensorflow as tf

    from rocket_ctr.export.serving_module import tower_logit
    from rocket_ctr.features.spec import HIST_LEN

    spec = model.spec
    rows = {}
    for i, f in enumerate(spec.id_features):
        size = [1] if f in spec.user_features else [n]
        rows[f.name] = tf.random.stateless_uniform(size, [i, 1], 0, f.num_rows, tf.int64)
        if f.history:
            rows[f.history] = tf.random.stateless_uniform([1, history], [i, 2], 0, f.num_rows, tf.int64)
    rows[HIST_LEN] = tf.constant([history], tf.int32)
    cases = []
    for tower in ("light", "booster"):
        if tower not in model.towers:
            continue
        for jit in (False, True):
            fn = tf.function(lambda r, tower=tower: tf.sigmoid(tower_logit(model, tower, r)), jit_compile=jit)

            def call(fn=fn):
                return fn(rows).numpy()

            call()
            cases.append(Case("model only (row ids)", f"{tower} {'xla' if jit else 'no-xla'}", call,
                              note="bottom (embeddings + attention) + tower on mapped ids, tf.function"))
    return cases


def fc_cases(model, n: int) -> list[Case]:
    """The towers' MLPs alone on a precomputed x [n, bottom width] (tf.function, XLA on/off)."""
    import tensorflow as tf

    cases = []
    for tower in ("light", "booster"):
        if tower not in model.towers:
            continue
        mlp, width = getattr(model, tower), model.bottom_of(tower).output_width
        x = tf.random.stateless_normal([n, width], seed=[0, 0])
        for jit in (False, True):
            fn = tf.function(lambda v, mlp=mlp: mlp(v, training=False), jit_compile=jit)

            def call(fn=fn, x=x):
                return fn(x).numpy()

            call()  # trace (and compile) outside the timing
            units = "-".join(str(u) for u in getattr(model.config, tower).units)
            cases.append(Case("FC layers only", f"{tower} {'xla' if jit else 'no-xla'}", call,
                              note=f"MLP {width}->{units}->1 on x [{n}, {width}]"))
    return cases


class DeepctrChild:
    """``deepctr_din_serving.py --serve-stdin`` in the DeepCTR venv, driven over a pipe."""

    def __init__(self, python: Path, env: dict, args: list[str], ready_timeout: float = 600):
        self._stderr = tempfile.NamedTemporaryFile(prefix="deepctr-serving-", suffix=".log", delete=False)
        self.process = subprocess.Popen([str(python), str(DEEPCTR_SCRIPT), "--serve-stdin", *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                        text=True, env=env, bufsize=1)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.info = self._answer(ready_timeout)["ready"]

    def _read(self):
        for line in self.process.stdout:
            if line.startswith(PREFIX):
                self._lines.put(line[len(PREFIX):])
        self._lines.put(None)

    def _answer(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"deepctr child: no answer in {timeout:.0f} s:\n{self.log_tail()}") from None
        if line is None:
            self.process.wait(10)
            raise RuntimeError(f"deepctr child exited ({self.process.returncode}):\n{self.log_tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"deepctr child: {answer['error']}")
        return answer

    def chunk(self, k: int) -> list[float]:
        self.process.stdin.write(f"run {k}\n")
        self.process.stdin.flush()
        return self._answer(timeout=60 + 5 * k)["seconds"]

    def log_tail(self, chars: int = 3000) -> str:
        self._stderr.flush()
        text = Path(self._stderr.name).read_text(errors="replace")
        lines = [l for l in text.splitlines() if not l.startswith(("I0000", "WARNING: All log", "E0000"))]
        return "\n".join(lines)[-chars:]

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        self._stderr.close()
        Path(self._stderr.name).unlink(missing_ok=True)


def start_deepctr(args, stack: ExitStack, log_dir: Path | None) -> tuple[Case | None, dict | None, str | None]:
    """(case, child info, why not) for DeepCTR DIN."""
    sys.path.insert(0, str(HERE))
    from bench_train_throughput import _deepctr_env, ensure_deepctr_venv

    python, how = ensure_deepctr_venv(args.deepctr_venv)
    if python is None:
        return None, None, how
    child_args = ["--candidates", str(args.candidates), "--history", str(args.history), "--warmup", str(args.warmup)]
    if log_dir is not None and (log_dir / "train").is_dir():
        child_args += ["--data", str(log_dir / "train"), "--fit-steps", str(args.deepctr_fit_steps)]
    export_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="deepctr-din-savedmodel-"))
    child_args += ["--export-dir", str(Path(export_dir) / "1")]
    print(f"starting DeepCTR DIN ({how} {args.deepctr_venv}): build, save, load, warm up ...", flush=True)
    try:
        child = DeepctrChild(python, _deepctr_env(), child_args)
    except (RuntimeError, OSError) as err:
        return None, None, str(err)
    stack.callback(child.close)
    info = child.info
    print(f"  {info['export']}; {info['params']:,} params; vocabularies {info['vocabulary_sizes']}; "
          f"request {info['inputs']}", flush=True)
    return Case("in-process (DeepCTR venv)", "deepctr DIN", chunk=child.chunk,
                note="200 rows, user profile + history repeated per row"), info, None


# ----- measuring -----------------------------------------------------------------------------------
def measure(cases: list[Case], requests: int, rounds: int, warmup: int) -> None:
    """``requests`` per case in ``rounds`` chunks; each round runs every case once, order rotated."""
    from rocket_ctr.serving.latency import interleave

    for case in cases:
        case.run(warmup)
    chunks = interleave([case.run for case in cases], requests, rounds, rotate=True,
                        on_round=lambda r, n: print(f"  round {r}/{n} done", flush=True))
    for case, measured in zip(cases, chunks):
        case.chunks += measured


def summary(case: Case) -> dict:
    from rocket_ctr.serving.latency import median_chunk_p50, summarize

    seconds = [s for c in case.chunks for s in c]
    return {"backend": case.backend, "model": case.model, "note": case.note, "requests": len(seconds),
            **summarize(seconds, quantiles=(50, 90, 99)), "chunk_p50_median_ms": median_chunk_p50(case.chunks)}


def goals(results: dict) -> list[dict]:
    """The goals as ratios / differences of p50 with PASS or MISS."""
    def p50(name, key="p50_ms"):
        return results[name][key] if name in results else None

    rows = []

    def ratio(what, slow, fast, target):
        if p50(slow) is None or p50(fast) is None:
            rows.append(dict(goal=what, target=f">= {target:g}x", value=None, result="n/a"))
            return
        value = p50(slow) / p50(fast)
        chunked = p50(slow, "chunk_p50_median_ms") / p50(fast, "chunk_p50_median_ms")
        rows.append(dict(goal=what, target=f">= {target:g}x", value=value, chunk_value=chunked,
                         text=f"{value:.2f}x ({p50(slow):.2f} / {p50(fast):.2f} ms)",
                         result="PASS" if value >= target else "MISS"))

    for v in ("xla", "no-xla"):
        ratio(f"DeepCTR DIN / light {v} (in-process p50)", "deepctr DIN", f"in-process|light {v}", 3)
    for v in ("xla", "no-xla"):
        ratio(f"booster / light, full request, {v}", f"in-process|booster {v}", f"in-process|light {v}", 3)
    for v in ("no-xla", "xla"):
        ratio(f"booster / light, FC layers only, {v}", f"FC layers only|booster {v}", f"FC layers only|light {v}", 3)
    for kind in ("gRPC", "REST"):
        name, base = f"{kind} test server|light xla", "in-process|light xla"
        if p50(name) is None or p50(base) is None:
            continue
        added = p50(name) - p50(base)
        chunked = p50(name, "chunk_p50_median_ms") - p50(base, "chunk_p50_median_ms")
        rows.append(dict(goal=f"{kind} added over in-process (light xla p50)",
                         target="<= 1 ms" if kind == "gRPC" else "(no goal)", value=added, chunk_value=chunked,
                         text=f"+{added:.2f} ms ({p50(name):.2f} vs {p50(base):.2f} ms)",
                         result=("PASS" if added <= 1.0 else "MISS") if kind == "gRPC" else "-"))
    return rows


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"1 user x {s['candidates']} candidates x {s['history']} history steps, {s['requests']} requests per "
             f"case in {s['rounds']} interleaved rounds, {s['cpus']} CPU cores (load average at start "
             f"{s['load_average']:.1f}), TensorFlow {s['tensorflow']}",
             "",
             "| backend | model | p50 ms | p90 ms | p99 ms | median of chunk p50s ms |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in report["results"].values():
        lines.append(f"| {r['backend']} | {r['model']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {r['chunk_p50_median_ms']:.2f} |")
    lines += ["", "| goal | target | measured (p50) | by chunk medians | result |", "| --- | --- | --- | --- | --- |"]
    for g in report["goals"]:
        if g["value"] is None:
            lines.append(f"| {g['goal']} | {g['target']} | not measured | | n/a |")
            continue
        chunk = f"{g['chunk_value']:.2f}x" if "x" in g["target"] else f"+{g['chunk_value']:.2f} ms"
        lines.append(f"| {g['goal']} | {g['target']} | {g['text']} | {chunk} | {g['result']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="a trained run (default: train one into --work-dir)")
    parser.add_argument("--log", type=Path, default=None,
                        help="log folder with train/ [test/]: DeepCTR vocabularies and fit, export verification "
                             "(default: the generated one when --run-dir is not given)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/rocket_serving_bench"))
    parser.add_argument("--requests", type=int, default=500, help="timed requests per case (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved chunks per case (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per case (default: %(default)s)")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--deepctr-venv", type=Path, default=Path("/tmp/deepctr-venv"))
    parser.add_argument("--deepctr-fit-steps", type=int, default=20, help="batches DeepCTR DIN trains before export")
    parser.add_argument("--skip-deepctr", action="store_true")
    parser.add_argument("--skip-server", action="store_true", help="no gRPC / REST cases")
    parser.add_argument("--json", type=Path, default=None, help="write the report (and per-request samples) here")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.candidates < 1 or args.history < 1 or args.warmup < 0:
        parser.error("--requests, --candidates, --history must be >= 1 and --warmup >= 0")

    command = "TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_serving_latency.py " + shlex.join(sys.argv[1:])
    cpus = len(os.sched_getaffinity(0))
    print(f"CPU cores: {cpus} (load average {os.getloadavg()[0]:.1f}: other processes share them)", flush=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.log
    if args.run_dir is None:
        run_dir, generated = ensure_run(args.work_dir)
        log_dir = log_dir or generated
    else:
        run_dir = args.run_dir

    import tensorflow as tf

    from rocket_ctr.serving.latency import inprocess_case, served_cases
    from rocket_ctr.train.run_dir import restore_model

    model, _, _ = restore_model(run_dir)
    eval_data = None
    if log_dir is not None:
        eval_data = str(log_dir / "test") if (log_dir / "test").is_dir() else str(log_dir / "train")
    print(f"exports of {run_dir} (cached under {args.work_dir / 'exports'}):", flush=True)
    exports = ensure_exports(model, run_dir, args.work_dir, eval_data)

    n, history = args.candidates, args.history
    deepctr_info, deepctr_skipped = None, None
    with ExitStack() as stack:
        cases = [Case("in-process", name, inprocess_case(path, history)(n)) for name, path in exports.items()]
        if not args.skip_server and "light xla" in exports:
            print("starting the test server on the light xla export (replays its warmup) ...", flush=True)
            served = stack.enter_context(served_cases(exports["light xla"], history))
            cases += [Case(backend, "light xla", make(n)) for backend, make in served]
        if args.skip_deepctr:
            deepctr_skipped = "--skip-deepctr"
        else:
            case, deepctr_info, deepctr_skipped = start_deepctr(args, stack, log_dir)
            if case is not None:
                cases.append(case)
            else:
                print(f"DeepCTR DIN not measured: {deepctr_skipped}", flush=True)
        cases += model_cases(model, n, history) + fc_cases(model, n)
        print(f"measuring {len(cases)} cases x {args.requests} requests in {args.rounds} interleaved rounds ...",
              flush=True)
        measure(cases, args.requests, args.rounds, args.warmup)

    results = {}
    for case in cases:
        key = case.model if case.model == "deepctr DIN" else f"{case.backend}|{case.model}"
        results[key] = summary(case)
    report = {
        "settings": dict(candidates=n, history=history, requests=args.requests, rounds=args.rounds,
                         warmup=args.warmup, cpus=cpus, load_average=os.getloadavg()[0],
                         tensorflow=tf.__version__, run_dir=str(run_dir), log=str(log_dir) if log_dir else None,
                         exports={k: str(v) for k, v in exports.items()}),
        "results": results, "goals": goals(results), "deepctr": deepctr_info, "deepctr_skipped": deepctr_skipped,
        "command": command,
    }
    print("\n" + markdown(report))
    notes = {}
    for r in results.values():
        if r["note"]:
            notes.setdefault((r["backend"], r["note"]), []).append(r["model"])
    print("\n" + "\n".join(f"- {backend} ({', '.join(models)}): {note}" for (backend, note), models in notes.items()))
    if deepctr_skipped:
        print(f"(DeepCTR DIN not measured: {deepctr_skipped.splitlines()[0]})")
    print(f"\ncommand: {command}")
    if args.json:
        samples = {key: [s for c in case.chunks for s in c] for key, case in zip(results, cases)}
        args.json.write_text(json.dumps({**report, "samples_s": samples}, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
