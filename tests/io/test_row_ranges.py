"""Row-range shards: contiguous, near-equal shares of any Parquet input, read back exactly."""
import pyarrow.parquet as pq
import pytest

from conftest import log_columns
from rocket_ctr.errors import InputError
from rocket_ctr.io.row_ranges import file_fragments, plan_shard, shard_bounds, shard_sizes


def _read(pieces, batch_size=7) -> list[int]:
    ids = []
    for piece in pieces:
        position = piece.start
        for first_row, batch in piece.batches(["item_id"], batch_size):
            assert first_row == position  # row numbers count from the file's start, without gaps
            position += batch.num_rows
            ids += batch.column("item_id").to_pylist()
        assert position == piece.stop
    return ids


@pytest.mark.parametrize("row_group_size", [None, 10, 33])
@pytest.mark.parametrize("num_shards", [1, 2, 3, 7, 95])
def test_shards_are_contiguous_near_equal_and_cover_every_row_once(click_log, row_group_size, num_shards):
    paths = [click_log("a.parquet", columns=log_columns(60), row_group_size=row_group_size),
             click_log("b.parquet", columns=log_columns(35, start=60), row_group_size=row_group_size)]
    fragments = file_fragments(paths)
    shards = [_read(plan_shard(fragments, num_shards, i)) for i in range(num_shards)]
    assert sum(shards, []) == list(range(95))  # in order, each row once
    assert {len(s) for s in shards} <= {95 // num_shards, -(-95 // num_shards)}
    assert [len(s) for s in shards] == shard_sizes(95, num_shards)


def test_a_shard_reads_only_the_row_groups_it_overlaps(click_log):
    path = click_log(columns=log_columns(100), row_group_size=10)
    (piece,) = plan_shard(file_fragments([path]), 4, 1)  # rows 25-49: row groups 2..4
    assert (piece.start, piece.stop, piece.name) == (25, 50, f"{path} (rows 25-49)")
    assert _read([piece], batch_size=1000) == list(range(25, 50))
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    (whole,) = plan_shard(file_fragments([path]))
    assert whole.name == path and _read([whole]) == list(range(100))


def test_more_shards_than_rows_leaves_some_empty_and_bad_indices_are_refused(click_log):
    fragments = file_fragments([click_log(columns=log_columns(3))])
    assert [sum(p.num_rows for p in plan_shard(fragments, 5, i)) for i in range(5)] == [0, 1, 0, 1, 1]
    with pytest.raises(InputError, match=r"shard_index must be in \[0, 2\), got 2"):
        shard_bounds(10, 2, 2)
    with pytest.raises(InputError, match="num_shards must be >= 1, got 0"):
        shard_bounds(10, 0, 0)
