"""The log gate: what it refuses from the files' footers alone, and what it leaves to the reader."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import log_columns, write_log
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.log_gate import check_log


def test_a_good_log_gives_its_files_and_row_count(tmp_path):
    write_log(tmp_path / "a.parquet", n=30)
    write_log(tmp_path / "b.parquet", n=20, start=30)
    checked = check_log(tmp_path, FeatureSpec())
    assert [p.rsplit("/", 1)[1] for p in checked.files] == ["a.parquet", "b.parquet"]
    assert checked.num_rows == 50 and "label" in checked.schema.names


@pytest.mark.parametrize("labels,expected", [([0, 1, None, 1], "1 null label"), ([0, 1, 2, 1], "holds 2")])
def test_labels_outside_0_1_are_refused_from_the_footer_statistics(labels, expected, tmp_path):
    columns = log_columns(4)
    columns["label"] = labels
    path = write_log(tmp_path / "log.parquet", columns)
    with pytest.raises(InputError, match=expected) as caught:
        check_log(path, FeatureSpec())
    assert path in str(caught.value)


def test_without_statistics_the_labels_are_left_to_the_readers_batch_checks(tmp_path):
    from rocket_ctr.io.reader import ClickLogReader

    columns = log_columns(4)
    columns["label"] = [0, 1, 2, 1]
    path = str(tmp_path / "log.parquet")
    table = pa.table({k: v for k, v in columns.items()})
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(columns["label"], pa.int64()))
    pq.write_table(write_log_types(table), path, write_statistics=False)
    assert check_log(path, FeatureSpec()).num_rows == 4
    with pytest.raises(InputError, match="labels must be 0 or 1"):
        list(ClickLogReader(path, FeatureSpec()))


def write_log_types(table: pa.Table) -> pa.Table:
    """``table`` cast to the reference schema's types where it has their columns."""
    from conftest import REFERENCE_SCHEMA

    fields = [REFERENCE_SCHEMA.field(n) if n in REFERENCE_SCHEMA.names else table.schema.field(n)
              for n in table.schema.names]
    return table.cast(pa.schema(fields))
