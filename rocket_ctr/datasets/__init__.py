"""Converters of public click logs into the reference Parquet schema plus ``feature_spec.json``.

One module per data set, each with ``convert(paths, out, *, max_history, seed, progress)``:
:mod:`~rocket_ctr.datasets.amazon` (reviews, DIN-style pairs), :mod:`~rocket_ctr.datasets.movielens`
(100K / 1M ratings) and :mod:`~rocket_ctr.datasets.taobao` (Tianchi display ads, partitioned by
:mod:`~rocket_ctr.datasets.taobao_buckets`); :mod:`~rocket_ctr.datasets.common` (reading) and
:mod:`~rocket_ctr.datasets.output` (writing) hold what they share. ``rocket-ctr convert`` is the CLI.
"""
