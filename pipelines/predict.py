"""``rocket-ctr predict``: score a Parquet log with a trained run or an exported SavedModel.

Writes ``OUT/part-*.parquet`` (the input rows in order: user id, candidate id, timestamp, label,
``p_light`` and, from a run dir, ``p_booster``) and ``OUT/_predict-*.json`` (rows, seconds,
rows/s), streaming the log in bounded memory. ``--num-shards K --shard-index i`` scores the i-th
contiguous 1/K of the rows (one process per shard, on one machine or many, into one OUT);
``--processes K`` runs K such processes here and moves their parts into OUT when all succeeded.
"""
from __future__ import annotations

import argparse
import gc


def add_parser(subparsers) -> None:
    """Registers the ``predict`` sub-command."""
    parser = subparsers.add_parser("predict", help="score a Parquet log into Parquet parts (batch scoring)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="a run dir written by rocket-ctr train (light and booster scores)")
    source.add_argument("--model", metavar="BASE[/V]", help="an exported SavedModel (its highest version under BASE)")
    add("--data", required=True, help="Parquet file, folder or glob to score")
    add("--out", required=True, metavar="DIR", help="output folder of Parquet parts")
    add("--overwrite", action="store_true", help="replace the results already in --out")
    add("--batch-size", type=int, default=8_192, help="rows per scoring batch (default: %(default)s)")
    add("--rows-per-file", type=int, default=1_000_000, help="rows per output part (default: %(default)s)")
    add("--booster", action=argparse.BooleanOptionalAction, default=True,
        help="with --run-dir: also score the booster tower (--no-booster: the light tower only, faster)")
    add("--xla", action=argparse.BooleanOptionalAction, default=False,
        help="with --run-dir: XLA-compile the towers (off by default: on large batches plain TensorFlow was "
             "faster here, and every new batch shape costs a compilation)")
    add("--num-shards", type=int, default=1, help="score only shard --shard-index of this many (default: 1)")
    add("--shard-index", type=int, default=0, help="which shard, in [0, --num-shards) (default: 0)")
    add("--processes", type=int, default=1, help="score with this many local processes, one shard each")
    add("--threads", type=int, default=0, help="TensorFlow threads per process (default: TensorFlow's choice)")
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on stderr")
    add("--progress-lines", action="store_true", help=argparse.SUPPRESS)  # child of --processes: counts on stdout
    parser.set_defaults(func=run)


def load_scorer(args):
    """(scorer, spec, source) of ``--run-dir`` or ``--model``."""
    from rocket_ctr.scoring import scorer as scoring

    if args.run_dir:
        from rocket_ctr.train.run_dir import restore_model

        model, spec, _ = restore_model(args.run_dir)
        towers = ("light", "booster") if args.booster else ("light",)
        spec = spec if args.booster else spec.served()  # booster-only columns: needed by p_booster alone
        return scoring.model_scorer(model, spec, towers, jit_compile=args.xla), spec, str(args.run_dir)
    loaded, info = scoring.load_saved_model(args.model)
    spec = scoring.export_spec(info, args.data)
    return scoring.saved_model_scorer(loaded, info), spec, info["path"]


def _check_flags(args) -> None:
    from rocket_ctr.errors import InputError

    if args.processes < 1:
        raise InputError(f"--processes must be >= 1, got {args.processes}")
    if args.processes > 1 and args.num_shards != 1:
        raise InputError("--processes and --num-shards exclude each other (--processes K runs the K shards here)")
    if args.num_shards < 1 or not 0 <= args.shard_index < args.num_shards:
        raise InputError(f"--shard-index must be in [0, --num-shards) = [0, {args.num_shards}), got {args.shard_index}")
    for flag in ("batch_size", "rows_per_file"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.threads < 0:
        raise InputError(f"--threads must be >= 0, got {args.threads}")


def run(args) -> int:
    _check_flags(args)
    if args.processes > 1:
        from rocket_ctr.pipelines.predict_processes import run_processes

        return run_processes(args)
    from rocket_ctr.scoring.memory_reuse import reuse_cpu_buffers

    reuse_cpu_buffers()  # before TensorFlow's first tensor
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from rocket_ctr.progress import Progress
    from rocket_ctr.scoring.batch_predict import predict_log
    from rocket_ctr.scoring.prediction_output import check_out_dir

    check_out_dir(args.out, args.num_shards, args.shard_index, args.overwrite)  # before loading the model
    scorer, spec, source = load_scorer(args)
    bar = {}

    def on_start(total):
        bar["p"] = Progress(total, enabled=args.progress and not args.progress_lines)

    def on_progress(n):
        bar["p"].update(n)
        if args.progress_lines:
            print(f"progress {n}", flush=True)

    gc.freeze()  # the loaded model stays out of the collector's full passes (each walked all of its objects)
    try:
        summary = predict_log(scorer, spec, args.data, args.out, num_shards=args.num_shards,
                              shard_index=args.shard_index, batch_size=args.batch_size,
                              rows_per_file=args.rows_per_file, overwrite=args.overwrite, source=source,
                              on_start=on_start, on_progress=on_progress)
    finally:
        gc.unfreeze()  # an in-process caller (tests) gets its collector back as it was
    bar["p"].close()
    if args.progress_lines:
        return 0
    shard = f" (shard {args.shard_index} of {args.num_shards})" if args.num_shards > 1 else ""
    print(f"scored {summary['rows']:,} rows{shard} with {source} ({', '.join(summary['towers'])}) in "
          f"{summary['seconds']:.1f} s: {summary['rows_per_second']:,.0f} rows/s")
    print(f"  {len(summary['files'])} part file(s) in {args.out}/")
    return 0
