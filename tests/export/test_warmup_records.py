"""Warmup records: every (history bucket, candidate bucket) shape, the buckets the rows hit most first."""
import numpy as np

from rocket_ctr.export.rows import sample_rows
from rocket_ctr.export.warmup import history_order, warmup_logs
from rocket_ctr.features.signatures import SCORE_ROWS, SERVING_DEFAULT
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec


def _shape(record, name):
    return [d.size for d in record.predict_log.request.inputs[name].tensor_shape.dim]


def test_records_cover_every_shape_most_hit_history_bucket_first():
    spec = FeatureSpec()  # history buckets 8 / 16 / 32 / 50
    rows = sample_rows(spec, None, n=64)
    n = len(rows[HIST_LEN])
    # most rows hold a 40-step history (bucket 50), then 12 (16), then 3 (8); none in bucket 32
    rows[HIST_LEN] = np.array([40] * 40 + [12] * 20 + [3] * (n - 60), np.int32)
    assert history_order(spec, rows) == [3, 1, 0, 2]
    logs = warmup_logs(spec, rows, max_candidates=16)
    one_user = [r for r in logs if r.predict_log.request.model_spec.signature_name == SERVING_DEFAULT]
    batches = [r for r in logs if r.predict_log.request.model_spec.signature_name == SCORE_ROWS]
    assert [_shape(r, "hist_item_id")[1] for r in one_user] == [50, 50, 16, 16, 8, 8, 32, 32]
    assert [_shape(r, "item_id")[0] for r in one_user] == [8, 16] * 4
    assert [(_shape(r, "hist_item_id")[1], _shape(r, "item_id")[0]) for r in batches] == [
        (50, 64), (50, 256), (16, 64), (16, 256), (8, 64), (8, 256), (32, 64), (32, 256)]


def test_histories_longer_than_the_maximum_count_in_the_last_bucket_and_ties_keep_the_shorter_first():
    spec = FeatureSpec()
    rows = {HIST_LEN: np.array([0, 8, 9, 200, 50, 33])}  # buckets 8, 8, 16, 50, 50, 50
    assert history_order(spec, rows) == [3, 0, 1, 2]
    assert history_order(spec, {HIST_LEN: np.array([20, 5])}) == [0, 2, 1, 3]
