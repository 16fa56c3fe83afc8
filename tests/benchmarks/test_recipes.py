"""benchmarks/recipes.py and the results lines' joins: every recipe resolves to a valid config, differing
recipes get differing keys, and a results line counts for a recipe only when its stored config is what
the recipe resolves to today (no training)."""
import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_frontier  # noqa: E402
import experiment_real_logs  # noqa: E402

import experiment_results  # noqa: E402
import recipes  # noqa: E402
from rocket_ctr.config import RocketConfig  # noqa: E402

COMPOSED = ["validation auto + no warmup + hint 0", "light dot + no warmup + booster dot + hint 0",
            "validation auto + base mode + light mean", "rocket+dot+buckets", "reader r=0.25"]


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    monkeypatch.setattr(experiment_results, "git_commit", lambda: "abc123")


def every_recipe():
    for family in recipes.FAMILIES:
        for name in recipes.listed(family):
            yield family, name
    yield from [("real logs", COMPOSED[0]), ("real logs", COMPOSED[1]), ("real logs", COMPOSED[2]),
                ("throughput", COMPOSED[3]), ("calibration", COMPOSED[4])]


def test_every_recipe_resolves_to_a_valid_rocket_config():
    for family, name in every_recipe():
        resolved = recipes.resolve(family, name, seed=1)
        assert set(resolved) == {"system", "config", "spec", "env"}
        if resolved["system"] != recipes.ROCKET_CTR:
            continue
        config = RocketConfig().replace(resolved["config"])  # raises FieldError on anything invalid
        assert config.to_dict() == resolved["config"], (family, name)
        assert config.training.seed == 1


def test_the_registry_holds_what_the_runs_train():
    dot = recipes.resolve("real logs", "validation auto + no warmup + hint 0", epochs=3)["config"]
    assert dot["training"]["validation_fraction"] is None and dot["training"]["batch_size"] == 256
    assert dot["hint"]["warmup"] is False and dot["hint"]["weight"] == 0.0 and dot["training"]["epochs"] == 3
    assert recipes.resolve("protection", "base")["config"]["training"]["epochs"] == 2
    assert recipes.resolve("ablation", "rocket (mimic)", epochs=1)["config"]["hint"]["trains_bottom"] is True
    assert recipes.resolve("throughput", "base+stringhash")["spec"] == {"id_hash": "string"}
    with pytest.raises(KeyError, match="unknown changes"):
        recipes.resolve("real logs", "defaults + no such change")


def test_differing_recipes_get_differing_keys_and_the_seed_is_no_part_of_it():
    by_key = {}
    for family, name in every_recipe():
        resolved = recipes.resolve(family, name, seed=0)
        by_key.setdefault(recipes.recipe_key(resolved), []).append(copy.deepcopy(resolved))
    for bodies in by_key.values():  # one key, one resolved config
        assert all(b == bodies[0] for b in bodies)
    assert len(by_key) > 50
    def key(name, family="real logs", **run):
        return recipes.recipe_key(recipes.resolve(family, name, **run))

    assert key("defaults", seed=0) == key("defaults", seed=7)
    assert key("defaults", epochs=3) != key("defaults", epochs=2)
    assert key("light dot") != key("light mean")
    assert key("base") == key("validation auto + base mode")  # spelled differently, trained the same: one key
    # the same config, another spec edit or another log spec: other keys
    assert key("no validation") != key("text id hash")
    assert key("full rate", "calibration") != key("upstream r=0.1", "calibration")


def line(name, log="beauty", seed=0, gauc=0.7, epochs=3, config=None):
    """A results line as experiment_real_logs.py writes it (config: what the run trained)."""
    record = {"key": f"{log}|{name}|{seed}|{epochs}|{gauc}", "log": log, "variant": name, "seed": seed,
              "epochs": epochs,
              **experiment_results.provenance("real logs", name, f"/data/{log}", config=config, epochs=epochs,
                                              seed=seed),
              "light": {"gauc": gauc}, "booster": {"gauc": gauc + 0.01}, "eval_gauc_per_epoch": [gauc]}
    return record


def trained_under_other_defaults(name, **change):
    resolved = recipes.resolve("real logs", name, epochs=3, seed=0)
    for path, value in change.items():
        section, field = path.split(".")
        resolved["config"][section][field] = value
    return resolved


def test_a_line_joins_its_recipe_only_with_the_config_it_resolves_to_today():
    today = line("defaults", seed=0, gauc=0.71)
    stale = line("defaults", seed=1, gauc=0.60, config=trained_under_other_defaults(
        "defaults", **{"model.light_interest": "shared", "model.booster_interest": "din",
                       "model.booster_embedding_dim": 0, "model.booster_wide_crosses": "",
                       "training.booster_wide_rate": 10.0, "hint.weight": 0.0}))
    unstored = {k: v for k, v in line("defaults", seed=2, gauc=0.50).items()
                if k not in ("config", "family", "recipe", "settings")}
    records = [today, stale, unstored]

    assert experiment_results.lines_of(records, "real logs", "defaults", epochs=3) == [today]
    # the stale line trained what "light shared" resolves to today: it counts there, under that recipe
    assert experiment_results.lines_of(records, "real logs", "light shared + validation auto", epochs=3) == [stale]
    assert experiment_results.finished(records, "real logs", "defaults", {"log": "beauty"}, epochs=3, seed=0)
    assert not experiment_results.finished(records, "real logs", "defaults", {"log": "beauty"}, epochs=3, seed=1)
    assert not experiment_results.finished(records, "real logs", "defaults", {"log": "beauty"}, epochs=3, seed=2)
    note = experiment_results.unjoined_note(records)
    assert "1 line(s) without a stored config" in note and "'defaults' x1" in note

    rows = experiment_real_logs.table(records, 3, ["defaults", "light shared + validation auto"]).splitlines()
    assert "| 0.7100 ± 0.0000 n=1 |" in next(r for r in rows if r.startswith("| defaults |"))
    assert "| 0.6000 ± 0.0000 (-0.1100) n=1 |" in next(r for r in rows if r.startswith("| light shared +"))
    assert rows[-1].startswith("note: ")


def test_the_frontier_joins_by_stored_config_not_by_name():
    dot = line("validation auto + light dot", gauc=0.72)
    alias = line("defaults", seed=1, gauc=0.74)  # today's defaults train the dot light tower
    stale = line("validation auto + light dot", seed=2, gauc=0.40, config=trained_under_other_defaults(
        "validation auto + light dot", **{"training.fold_in_validation": "no"}))
    unstored = {k: v for k, v in line("validation auto + light dot", seed=3, gauc=0.30).items() if k != "config"}
    quality = bench_frontier.quality([dot, alias, stale, unstored], 3, "validation auto + base mode",
                                     "validation auto")
    assert sorted(quality["light dot"]["beauty"]["rocket"]) == [0.72, 0.74]
    assert sorted(quality["light dot"]["beauty"]["rocket_seeds"]) == [0, 1]
    assert "base" not in quality["light dot"]["beauty"]
