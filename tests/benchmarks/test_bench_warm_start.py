"""benchmarks/bench_warm_start.py's arithmetic: the target ignores scratch's random start, steps to
target take the first evaluated step reaching it, ratios are warm / scratch steps."""
import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "bench_warm_start", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_warm_start.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def curve(*points):
    return [{"steps": s, "gauc": g} for s, g in points]


def test_target_ignores_step_0_and_ratios_are_warm_over_scratch_steps():
    sizes = {"eval_every": 100}
    done = {(0, "scratch"): {"curve": curve((0, 0.9), (100, 0.60), (200, 0.699), (300, 0.70)), "sizes": sizes},
            (0, "warm"): {"curve": curve((0, 0.69), (100, 0.698), (300, 0.71)), "sizes": sizes},
            (0, "warm-weights"): {"curve": curve((0, 0.69), (100, 0.69)), "sizes": sizes}}
    rows, ratios = bench.report(done, [0])
    assert rows[0]["target"] == pytest.approx(0.698)
    assert [r["steps"] for r in rows] == [200, 100, None]
    assert ratios == {"scratch": [1.0], "warm": [0.5], "warm-weights": [None]}
    assert rows[0]["resolution"] == pytest.approx(0.5) and rows[1]["gauc_at_0"] == 0.69
