"""Per-request latency of one user x N candidates: in-process SavedModel calls (what TF Serving
itself executes, without RPC) and end-to-end calls through a TF Serving endpoint (gRPC, REST).

All backends of one run are measured side by side, in alternating chunks of requests, so load
from other processes on the machine falls on each of them alike and their ratios stay meaningful.

Every loop is bounded (a fixed number of requests, a timeout per call) and only loopback
endpoints are measured unless the caller allows others.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.export.writer import SERVING_DEFAULT, read_export_info, resolve_export
from rocket_ctr.serving.client import connect
from rocket_ctr.serving.launcher import ServerProcess

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_REQUESTS = 100_000


def summarize(seconds: list, wall: float | None = None, quantiles=(50, 90, 95, 99)) -> dict:
    """Latency percentiles in ms (``p50_ms``, ...), max, mean, request count and, given the
    measurement's wall seconds, throughput (``qps``) of one measurement."""
    ms = np.asarray(seconds) * 1e3
    stats = {f"p{q}_ms": float(np.percentile(ms, q)) for q in quantiles}
    stats.update(max_ms=float(ms.max()), mean_ms=float(ms.mean()), requests=len(ms))
    if wall is not None:
        stats["qps"] = len(ms) / wall if wall > 0 else float("nan")
    return stats


def median_chunk_p50(chunks: list) -> float:
    """The median over chunks of each chunk's p50 in ms: robust to load that hit some chunks only."""
    return float(np.median([np.percentile(np.asarray(c) * 1e3, 50) for c in chunks]))


def timed(call: Callable[[], object], requests: int, concurrency: int = 1) -> tuple[list, float]:
    """Runs ``call`` ``requests`` times from ``concurrency`` threads.

    Returns:
        (per-request seconds, wall seconds).
    """
    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    times: list = [[] for _ in shares]
    errors: list = []

    def worker(i):
        try:
            for _ in range(shares[i]):
                started = time.perf_counter()
                call()
                times[i].append(time.perf_counter() - started)
        except Exception as err:  # noqa: BLE001 - re-raised after the threads stop
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency) if shares[i]]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return [s for part in times for s in part], wall


def interleave(runs: list, requests: int, rounds: int = 10, rotate: bool = False,
               on_round: Callable[[int, int], None] | None = None) -> list:
    """Runs every ``run(k)`` for ``requests`` requests in all, in ``rounds`` alternating chunks,
    so load from other processes falls on every run alike.

    Args:
        runs: callables taking a chunk size k (e.g. ``lambda k: timed(call, k)``).
        rotate: start each round one run later, so no run always follows the same one.
        on_round: called with (round, rounds) after each round.
    Returns:
        per run, in the order of ``runs``, the list of its chunk results.
    """
    rounds = max(1, min(rounds, requests))
    sizes = [requests // rounds + (i < requests % rounds) for i in range(rounds)]
    results, order = [[] for _ in runs], list(range(len(runs)))
    for r, k in enumerate(sizes):
        shift = r % len(runs) if rotate and runs else 0
        for i in order[shift:] + order[:shift]:
            results[i].append(runs[i](k))
        if on_round is not None:
            on_round(r + 1, rounds)
    return results


def measure_interleaved(calls: list, requests: int, concurrency: int = 1, warmup: int = 20,
                        rounds: int = 10) -> list:
    """Measures several calls side by side: ``requests`` each, in ``rounds`` alternating chunks
    (:func:`interleave`) from ``concurrency`` threads, after ``warmup`` untimed calls each.

    Returns:
        [(summary dict, per-request seconds)] in the order of ``calls``.
    """
    for call in calls:
        for _ in range(warmup):
            call()
    chunks = interleave([lambda k, call=call: timed(call, k, concurrency) for call in calls], requests, rounds)
    out = []
    for parts in chunks:
        times = [s for part, _ in parts for s in part]
        out.append((summarize(times, sum(wall for _, wall in parts)), times))
    return out


def synthetic_request(signature: dict, candidates: int, history: int, seed: int = 0) -> dict:
    """A ``serving_default`` request with random ids: shape [1] inputs get one value, [1, L]
    inputs ``history`` steps, [N] inputs ``candidates`` values."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for alias, (dtype, shape) in signature.items():
        size = (1, history) if len(shape) == 2 else (1,) if list(shape) == [1] else (candidates,)
        ids = rng.integers(0, 1_000_000, size)
        if dtype == tf.string:
            inputs[alias] = np.array([str(v).encode() for v in ids.ravel()], dtype=object).reshape(size)
        else:
            inputs[alias] = ids.astype(dtype.as_numpy_dtype)
    return inputs


def label(version_dir: Path) -> str:
    """``light xla`` / ``booster no-xla`` from the export's info file (else the folder)."""
    info = read_export_info(version_dir)
    if not info:
        return str(version_dir)
    return f"{info['tower']} {'xla' if info['jit_compile'] else 'no-xla'}"


def _signature_of(function) -> dict:
    return {alias: (spec.dtype, [-1 if d is None else d for d in spec.shape.as_list()])
            for alias, spec in function.structured_input_signature[1].items()}


def inprocess_case(version_dir: Path, history: int):
    """(label, make(N) -> call) for in-process ``serving_default`` calls of one export."""
    function = tf.saved_model.load(str(version_dir)).signatures[SERVING_DEFAULT]
    signature = _signature_of(function)

    def make(n):
        tensors = {k: tf.constant(v) for k, v in synthetic_request(signature, n, history).items()}
        return lambda: function(**tensors)["probabilities"].numpy()
    return make


def endpoint_case(client, history: int):
    """make(N) -> call for ``serving_default`` calls through a client of a TF Serving endpoint."""
    signature = client.signature()[0]

    def make(n):
        inputs = synthetic_request(signature, n, history)
        return lambda: client.predict(inputs)
    return make


@contextlib.contextmanager
def served_cases(version_dir: Path, history: int, model_name: str = "bench", timeout: float = 600):
    """The test server (a child process on free loopback ports) serving exactly one export version.

    Yields:
        [(backend, make(N) -> call)] for its gRPC and REST endpoints (``"gRPC test server"``, ...).
    """
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rocket-ctr-bench-")))
        (base / version_dir.name).symlink_to(version_dir.resolve())
        served = stack.enter_context(ServerProcess(base, model_name, timeout=timeout))
        cases = []
        for kind, endpoint in (("gRPC", served.grpc_target), ("REST", served.rest_target)):
            client = stack.enter_context(connect(endpoint, model_name))
            cases.append((f"{kind} test server", endpoint_case(client, history)))
        yield cases


def wait_until_warm(client, log: Callable = print, timeout: float = 600.0) -> None:
    """Waits while the endpoint's model has no AVAILABLE version but a LOADING one: the test server
    answers during its first version's warmup, and timings then would include XLA compilations."""
    deadline, said = time.monotonic() + timeout, False
    while "LOADING" in (states := {s["state"] for s in client.status()}) and "AVAILABLE" not in states:
        if time.monotonic() > deadline:
            raise InputError(f"the model is still LOADING (warming up) after {timeout:.0f} s")
        if not said:
            log("the model is LOADING (warming up): waiting until it is AVAILABLE before measuring")
            said = True
        time.sleep(0.5)


def check_target(target: str, allow_remote: bool) -> None:
    host = urlsplit(target).hostname
    if host not in LOOPBACK and not allow_remote:
        raise InputError(f"--target {target}: not a loopback address; pass --allow-remote to benchmark it")


def run_benchmark(model=None, target: str | None = None, compare=(), sizes=(100, 300, 500), history: int = 50,
                  requests: int = 1000, concurrency: int = 1, warmup: int = 20, model_name: str = "model",
                  server: bool = True, allow_remote: bool = False, log: Callable = print) -> dict:
    """Measures one user x N candidates for every N in ``sizes``, every backend side by side.

    Args:
        model: export base or version folder (in-process, and served by the test server).
        target: ``grpc://`` or ``http://`` endpoint to measure instead (its model ``model_name``).
        compare: more exports measured in process (e.g. the booster, a no-XLA export).
        sizes: candidate counts N; history: history length L; requests: timed calls per case;
        concurrency: client threads; warmup: untimed calls per case first.
        server: without a target, also start the test server and measure gRPC and REST.
    Returns:
        {"settings": ..., "results": [{"backend", "model", "candidates", "p50_ms", ...}], "ratios": [...],
         "samples": {(backend, model, N): per-request seconds}}
    """
    if not 1 <= requests <= MAX_REQUESTS or not 1 <= concurrency <= 64 or warmup < 0:
        raise InputError(f"--requests must be in [1, {MAX_REQUESTS}], --concurrency in [1, 64], --warmup >= 0")
    if model is None and target is None:
        raise InputError("give --model (an export) or --target (an endpoint)")
    settings = dict(history=history, requests=requests, concurrency=concurrency, warmup=warmup,
                    cpus=os.cpu_count(), tensorflow=tf.__version__)
    with contextlib.ExitStack() as stack:
        cases, main = [], model_name
        if target is not None:
            check_target(target, allow_remote)
            client = stack.enter_context(connect(target, model_name))
            wait_until_warm(client, log)
            cases.append((f"{urlsplit(target).scheme} {target}", model_name, endpoint_case(client, history)))
        else:
            exports = [resolve_export(model)] + [resolve_export(c) for c in compare]
            labels = [label(p) for p in exports]
            labels = [f"{n} {p}" if labels.count(n) > 1 else n for n, p in zip(labels, exports)]
            main = labels[0]
            cases += [("in-process", n, inprocess_case(p, history)) for n, p in zip(labels, exports)]
            if server:
                log(f"starting the test server on {exports[0]} (measured once its warmup is replayed: about a "
                    "minute for an XLA export on 2 cores)")
                served = stack.enter_context(served_cases(exports[0], history))
                cases += [(backend, main, make) for backend, make in served]
        results, samples = [], {}
        for n in sizes:
            measured = measure_interleaved([make(n) for _, _, make in cases], requests, concurrency, warmup)
            for (backend, name, _), (summary, times) in zip(cases, measured):
                results.append(dict(backend=backend, model=name, candidates=n, **summary))
                samples[(backend, name, n)] = times
                log(f"  {backend:<22} {name:<16} N={n:<5} p50 {summary['p50_ms']:.3f} ms  "
                    f"p99 {summary['p99_ms']:.3f} ms  {summary['qps']:.0f} req/s")
    return {"settings": settings, "results": results, "ratios": ratios(results, main), "samples": samples}


def ratios(results: list, main: str) -> list:
    """p50 ratios against the first export in process, and RPC overheads in ms."""
    base = {r["candidates"]: r["p50_ms"] for r in results if r["backend"] == "in-process" and r["model"] == main}
    out = []
    for r in results:
        n, reference = r["candidates"], base.get(r["candidates"])
        if reference is None or (r["backend"] == "in-process" and r["model"] == main):
            continue
        if r["backend"] == "in-process":
            out.append(dict(candidates=n, what=f"{r['model']} / {main} (in-process p50)",
                            ratio=r["p50_ms"] / reference))
        else:
            out.append(dict(candidates=n, what=f"{r['backend']} - in-process (p50, ms)",
                            added_ms=r["p50_ms"] - reference, ratio=r["p50_ms"] / reference))
    return out


def format_report(report: dict) -> str:
    """The results and ratios as text tables."""
    s = report["settings"]
    lines = [(f"one user x N candidates, history {s['history']}, {s['requests']} requests, concurrency "
              f"{s['concurrency']}, {s['cpus']} CPUs, TensorFlow {s['tensorflow']}"),
             (f"{'backend':<34} {'model':<16} {'N':>5} {'p50':>8} {'p90':>8} {'p95':>8} {'p99':>8} {'max':>8} "
              f"{'req/s':>8}")]
    for r in report["results"]:
        lines.append(f"{r['backend']:<34} {r['model']:<16} {r['candidates']:>5} {r['p50_ms']:>8.3f} "
                     f"{r['p90_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.3f} "
                     f"{r['qps']:>8.0f}")
    if report["ratios"]:
        lines.append("ratios (latencies in ms):")
        for r in report["ratios"]:
            extra = f"  (+{r['added_ms']:.3f} ms)" if "added_ms" in r else ""
            lines.append(f"  N={r['candidates']:<5} {r['what']:<48} {r['ratio']:.2f}x{extra}")
    return "\n".join(lines)


def frontier_point(report: dict, what: str, gauc: float | None = None) -> str:
    """One line: a model's point on the latency/quality frontier (``benchmarks/bench_frontier.py``),
    from :func:`run_benchmark`'s in-process result for its first export (largest N measured).

    Args:
        report: :func:`run_benchmark`'s report.
        what: the model in words (e.g. ``light tower (light_interest shared)``).
        gauc: its test GAUC, if known.
    """
    own = [r for r in report["results"] if r["backend"] == "in-process"]
    if not own:
        raise InputError("frontier_point: the report has no in-process result")
    first = own[0]["model"]
    r = max((r for r in own if r["model"] == first), key=lambda r: r["candidates"])
    quality = f"test GAUC {gauc:.4f}" if gauc is not None else "test GAUC not measured"
    return (f"frontier point: {what} [{r['model']}]: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms per request "
            f"in process (1 user x {r['candidates']} candidates x {report['settings']['history']} history steps, "
            f"{r['requests']} requests), {quality}; the other extractors, the booster and DeepCTR DIN in the "
            f"same run: benchmarks/bench_frontier.py")


def plot_histogram(report: dict, path) -> None:
    """One panel per N: per-request latency histograms of every backend/model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({n for _, _, n in report["samples"]})
    fig, axes = plt.subplots(len(sizes), 1, figsize=(8, 2.6 * len(sizes)), squeeze=False)
    for ax, n in zip(axes[:, 0], sizes):
        series = {(backend, model): np.asarray(times) * 1e3
                  for (backend, model, size), times in report["samples"].items() if size == n}
        top = 1.3 * max(np.percentile(ms, 99) for ms in series.values())  # one shared axis per panel
        for (backend, model), ms in series.items():
            ax.hist(np.minimum(ms, top), bins=80, range=(0, top), histtype="step", label=f"{backend}, {model}")
        ax.set_title(f"1 user x {n} candidates (slower than {top:.1f} ms piled up at the right edge)")
        ax.set_xlabel("latency (ms)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
