"""The run's FeatureSpec: the user id embedded as a user feature where the training log holds many
rows per user (``--user-id-embedding``), and what that embedding does in training and the export."""
import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TINY, log_columns
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.log_gate import check_log
from rocket_ctr.io.parquet_schema import arrow_schema
from rocket_ctr.train.run_spec import ROWS_PER_USER_TO_EMBED, user_id_buckets, with_user_id_embedding

SPEC = FeatureSpec().with_buckets(item_id=512, cate_id=64)


def write_users(path, users: int, rows_per_user: int, string_ids: bool = False, seed: int = 0) -> str:
    """A reference-schema log of ``users`` × ``rows_per_user`` rows (short histories)."""
    columns = log_columns(users * rows_per_user, seed=seed, max_len=6)
    ids = [i % users for i in range(users * rows_per_user)]
    columns["user_id"] = [f"u{i}" for i in ids] if string_ids else ids
    schema = arrow_schema(FeatureSpec(), user_id=pa.string() if string_ids else pa.int64())
    pq.write_table(pa.table(columns, schema=schema), path)
    return str(path)


def decided(path, setting="auto", spec=SPEC, earlier=None):
    return with_user_id_embedding(spec, check_log(path, spec), RocketConfig(user_id_embedding=setting), earlier)


def user_id_feature(spec: FeatureSpec) -> IdFeature | None:
    return next((f for f in spec.user_features if f.name == spec.user_id), None)


@pytest.mark.parametrize("users,rows,embedded", [(20, 60, True), (200, 3, False),
                                                 (10, ROWS_PER_USER_TO_EMBED, True),
                                                 (10, ROWS_PER_USER_TO_EMBED - 1, False)])
def test_auto_embeds_the_user_id_from_50_training_rows_per_user(tmp_path, users, rows, embedded):
    spec, note = decided(write_users(tmp_path / "log.parquet", users, rows))
    assert (user_id_feature(spec) is not None) == embedded
    assert spec.user_features[:2] == SPEC.user_features  # added after the profile, nothing else changes
    assert note == (f"user_id embedded (1024 hash buckets, {users} users): {rows:.1f} training rows per user "
                    f"(>= 50)" if embedded else f"user_id not embedded: {rows:.1f} training rows per user (< 50)")


def test_yes_and_no_decide_regardless_of_the_log(tmp_path):
    few = write_users(tmp_path / "few.parquet", 200, 3)
    many = write_users(tmp_path / "many.parquet", 20, 60)
    spec, note = decided(few, "yes")
    assert user_id_feature(spec) == IdFeature("user_id", dtype="int64", buckets=2048)
    assert note == "user_id embedded (2048 hash buckets, 200 users): {model.user_id_embedding} yes"
    assert decided(many, "no") == (SPEC, None)


def test_under_auto_a_user_id_the_boosters_wide_part_crosses_is_wide_only_below_50_rows(tmp_path):
    few, many = write_users(tmp_path / "few.parquet", 200, 3), write_users(tmp_path / "many.parquet", 20, 60)
    crossing = RocketConfig(booster_wide_crosses="user_id*cate_id")
    spec, note = with_user_id_embedding(SPEC, check_log(few, SPEC), crossing)
    assert user_id_feature(spec) == IdFeature("user_id", dtype="int64", buckets=2048, booster_only=True,
                                              wide_only=True)
    assert spec.served() == SPEC  # the light tower and its export never read it
    assert note.startswith("user_id read by the booster's wide crosses alone (2048 hash buckets, 200 users): "
                           "3.0 training rows per user")
    spec, _ = with_user_id_embedding(SPEC, check_log(many, SPEC), crossing)
    assert not user_id_feature(spec).booster_only  # enough rows: embedded for both towers, as without crosses
    auto = RocketConfig(booster_wide_crosses="auto")  # no wide part where the user id is too sparse to embed
    assert with_user_id_embedding(SPEC, check_log(few, SPEC), auto)[0] == SPEC
    in_base = RocketConfig(mode="base", booster_wide_crosses="user_id*cate_id")
    assert with_user_id_embedding(SPEC, check_log(few, SPEC), in_base)[0] == SPEC


def test_a_spec_that_lists_the_user_id_is_kept_as_it_is(tmp_path):
    listed = dataclasses.replace(SPEC, user_features=(*SPEC.user_features, IdFeature("user_id", buckets=77)))
    for setting in ("auto", "yes", "no"):
        assert decided(write_users(tmp_path / "many.parquet", 20, 60), setting, listed) == (listed, None)


@pytest.mark.parametrize("string_ids", [False, True])
def test_the_feature_takes_the_columns_dtype(tmp_path, string_ids):
    spec, _ = decided(write_users(tmp_path / "log.parquet", 20, 60, string_ids), "yes")
    assert user_id_feature(spec).dtype == ("string" if string_ids else "int64")
    check_log(tmp_path / "log.parquet", spec)  # the log passes the gate with the feature too


def test_buckets_are_the_next_power_of_two_of_8_per_user_within_bounds():
    assert [user_id_buckets(n) for n in (1, 128, 129, 500, 547, 131_072, 131_073, 10**7)] == \
        [1024, 1024, 2048, 4096, 8192, 2**20, 2**20, 2**20]


def test_under_auto_a_continued_run_keeps_its_choice(tmp_path):
    many = write_users(tmp_path / "many.parquet", 20, 60)
    few = write_users(tmp_path / "few.parquet", 200, 3)
    theirs = IdFeature("user_id", buckets=4096)
    embedding = dataclasses.replace(SPEC, user_features=(*SPEC.user_features, theirs))
    spec, note = decided(few, earlier=embedding)
    assert user_id_feature(spec) == theirs and note == "user_id embedded: the run this one continues embeds it"
    assert decided(many, earlier=SPEC) == (SPEC, "user_id not embedded: the run this one continues does not "
                                                 "embed it")
    assert user_id_feature(decided(many, "yes", earlier=SPEC)[0]).buckets == 1024  # yes/no still decide


def test_the_field_is_a_flag_and_older_run_dirs_read_no():
    from rocket_ctr.config.fields import flag_table

    assert RocketConfig().model.user_id_embedding == "auto"
    assert RocketConfig.from_saved({"model": {"mode": "rocket"}}).model.user_id_embedding == "no"
    assert flag_table(RocketConfig)["model.user_id_embedding"] == "--user-id-embedding"


# ----- training, resume and export with the user id embedded -------------------------------------
@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    from rocket_ctr.train.trainer import Trainer

    root = tmp_path_factory.mktemp("user_id_run")
    train, test = write_users(root / "train.parquet", 20, 60), write_users(root / "test.parquet", 20, 8, seed=1)
    config = RocketConfig(**TINY)
    trainer = Trainer(root / "run", train, test, config, SPEC, verbose=0)
    return trainer, trainer.fit(), train, test, config


def test_training_embeds_it_and_the_same_command_resumes(embedded_run):
    from rocket_ctr.train.trainer import Trainer

    trainer, metrics, train, test, config = embedded_run
    assert user_id_feature(trainer.spec) == IdFeature("user_id", buckets=1024)
    assert "user_id" in trainer.model.bottom.embeddings
    assert json.loads((trainer.run_dir / "feature_spec.json").read_text())["user_features"][-1]["name"] == "user_id"
    # the same command on the same run dir resumes it (here: finds it finished)
    again = Trainer(trainer.run_dir, train, test, config, SPEC, verbose=0)
    assert again.spec == trainer.spec and again.fit() == metrics
    assert trainer.spec_note == "user_id embedded (1024 hash buckets, 20 users): 60.0 training rows per user (>= 50)"
    assert again.spec_note == "user_id embedded: the run this one continues embeds it"


def test_a_run_dir_from_before_the_field_resumes_without_it(embedded_run, tmp_path, capsys):
    from rocket_ctr.train.trainer import Trainer

    _, _, train, test, _ = embedded_run
    run = tmp_path / "run"
    first = Trainer(run, train, test, RocketConfig(**{**TINY, "user_id_embedding": "no"}), SPEC, verbose=0)
    first.progress.assign([1, 0, 1])
    first.manager.save(checkpoint_number=1)  # a run interrupted after its first epoch
    saved = json.loads((run / "config.json").read_text())
    del saved["model"]["user_id_embedding"]  # written before the field existed
    (run / "config.json").write_text(json.dumps(saved))
    resumed = Trainer(run, train, test, RocketConfig(**TINY), SPEC, verbose=1)
    assert resumed.spec == SPEC and int(resumed.progress.numpy()[0]) == 1
    resumed.fit()
    out = capsys.readouterr().out
    assert "user_id not embedded: the run this one continues does not embed it" in out
    assert "resuming from checkpoint" in out


def test_the_export_takes_the_user_id_and_refuses_a_request_without_it(embedded_run, tmp_path):
    import tensorflow as tf

    from rocket_ctr.errors import InputError
    from rocket_ctr.export.rows import one_user_request, sample_rows
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.serving.client import one_user_inputs
    from rocket_ctr.serving.models import ServedModel
    from rocket_ctr.serving.status import ServingError

    trainer, _, _, test, _ = embedded_run
    spec = trainer.spec
    result = export_light(trainer.model, spec, tmp_path / "export", jit_compile=False, data=test, sample_size=32,
                          warmup_candidates=8, progress=False)
    served = ServedModel("rocket", result.version, result.path)
    assert served.inputs["serving_default"]["user_id"].dtype == tf.int64
    request = one_user_request(spec, sample_rows(spec, test, 16), 0, np.arange(4))
    assert request["user_id"].shape == (1,)

    def decode(name, value, dtype):
        return np.asarray(value, dtype.as_numpy_dtype)

    _, outputs = served.predict(request, decode)
    probabilities = outputs["probabilities"]
    assert probabilities.shape == (4,) and np.all((probabilities > 0) & (probabilities < 1))
    with pytest.raises(ServingError, match=r"Missing but required: \['user_id'\]"):
        served.predict({k: v for k, v in request.items() if k != "user_id"}, decode)
    signature = {k: (s.dtype, [-1 if d is None else d for d in s.shape.as_list()])
                 for k, s in served.inputs["serving_default"].items()}
    user = {k: v for k, v in request.items() if k not in ("user_id", "item_id", "cate_id")}
    with pytest.raises(InputError, match="user has no 'user_id'"):
        one_user_inputs(signature, user, {"item_id": [1, 2], "cate_id": [3, 4]})


def test_a_booster_only_user_id_crossed_by_the_wide_part_trains_and_stays_out_of_the_light_export(tmp_path):
    import tensorflow as tf

    from rocket_ctr.export.writer import export_light
    from rocket_ctr.train.trainer import Trainer

    train = write_users(tmp_path / "train.parquet", 100, 6)
    test = write_users(tmp_path / "test.parquet", 100, 2, seed=1)
    config = RocketConfig(**TINY, booster_wide=True, booster_wide_crosses="user_id*cate_id")
    trainer = Trainer(tmp_path / "run", train, test, config, SPEC, verbose=0)
    metrics = trainer.fit()
    assert metrics["booster"]["gauc"] is not None
    assert user_id_feature(trainer.spec).booster_only and "user_id" not in trainer.model.bottom.embeddings
    assert trainer.model.booster_wide.crosses == (("user_id", "cate_id"),)
    result = export_light(trainer.model, trainer.spec, tmp_path / "export", jit_compile=False, data=test,
                          sample_size=32, warmup_candidates=8, progress=False)
    signature = tf.saved_model.load(str(result.path)).signatures["serving_default"].structured_input_signature[1]
    assert "user_id" not in signature and "item_id" in signature
    day2 = Trainer(tmp_path / "day2", train, test, config, SPEC, verbose=0, warm_start=tmp_path / "run")
    assert user_id_feature(day2.spec).wide_only  # the source's spec: its crosses' rows carry over by id
    np.testing.assert_array_equal(day2.model.booster_wide.cross_tables[0].embeddings.numpy(),
                                  trainer.model.booster_wide.cross_tables[0].embeddings.numpy())
