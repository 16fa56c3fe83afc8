"""Where the light export's time goes beyond the model's arithmetic: one run, the
same untrained default model (``RocketModel(FeatureSpec(), RocketConfig())``) served five ways.

    .venv/bin/python benchmarks/bench_serving_gap.py [--requests 300] [--candidates 200] [--history 50]

1. ``export xla (buckets)``: ``export_light`` as shipped: N padded to its candidate bucket
   (``rocket_ctr.export.serving_module.candidate_bucket``: 200 -> 208).
2. ``export xla (pad 64)``: the same export with N padded to a multiple of 64 instead (200 -> 256).
3. ``export no-xla``: ``jit_compile=False`` (no padding).
4. ``model only xla`` / ``no-xla``: bottom + light tower on already-mapped row ids in a
   ``tf.function`` (``bench_serving_latency.model_cases``): the arithmetic alone, no id hashing,
   no signature wrapper, no padding.
Each in-process, 1 user x N candidates x L history steps, interleaved rounds (ratios are what to read).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    args = parser.parse_args(argv)

    import tensorflow as tf
    from bench_serving_latency import Case, measure, model_cases, summary

    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.export import serving_module
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.features.signatures import example_rows
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.model.rocket import RocketModel
    from rocket_ctr.serving.latency import inprocess_case

    spec = FeatureSpec()
    tf.keras.utils.set_random_seed(0)
    model = RocketModel(spec, RocketConfig())
    model(example_rows(spec), training=False)
    n, history = args.candidates, args.history
    with tempfile.TemporaryDirectory(prefix="rocket-serving-gap-") as work:
        exports = {"export xla (buckets)": export_light(model, spec, Path(work) / "buckets", 1).path,
                   "export no-xla": export_light(model, spec, Path(work) / "noxla", 1, jit_compile=False).path}
        shipped = serving_module._bucket
        serving_module._bucket = lambda size: (size + 63) // 64 * 64  # a fixed pad of 64 instead of the buckets
        try:
            exports["export xla (pad 64)"] = export_light(model, spec, Path(work) / "pad64", 1).path
        finally:
            serving_module._bucket = shipped
        cases = [Case("in-process", name, inprocess_case(path, history)(n)) for name, path in exports.items()]
        cases += [c for c in model_cases(model, n, history) if c.model.startswith("light")]
        measure(cases, args.requests, args.rounds, args.warmup)
    results = {f"{c.backend}|{c.model}": summary(c) for c in cases}
    reference = results["model only (row ids)|light xla"]["p50_ms"]
    print(f"\n1 user x {n} candidates (XLA pads to {serving_module.candidate_bucket(n)}; before: "
          f"{(n + 63) // 64 * 64}) x {history} steps, {args.requests} requests in {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| case | p50 ms | p99 ms | median chunk p50 ms | p50 / model only xla |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['chunk_p50_median_ms']:.2f} "
              f"| {r['p50_ms'] / reference:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
