"""``rocket-ctr train``: train a RocketModel on Parquet logs into a run dir (resumable)."""
from __future__ import annotations

import argparse
import contextlib
import shutil
from pathlib import Path

from rocket_ctr.config.fields import fields_with_metadata, flag_table
from rocket_ctr.config.schema import RocketConfig

# the train command's own arguments by the names the library gives them in messages
ARGUMENT_FLAGS = {"run_dir": "--run-dir", "train": "--train", "eval": "--eval", "strategy": "--strategy",
                  "warm_start": "--warm-start"}


def field_flags() -> dict[str, str]:
    """How this command names config fields and Trainer arguments in messages: their flags."""
    return {**flag_table(RocketConfig), **ARGUMENT_FLAGS}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--config FILE`` and one flag per RocketConfig field, generated from the fields
    (type, choices and help from each field's metadata; default: unset, so the file or the
    field's default applies)."""
    parser.add_argument("--config", help="YAML or JSON file of config fields (nested or flat names); flags override it")
    group = parser.add_argument_group("config fields (see rocket_ctr.config.schema)")
    for path, flag, field, default in fields_with_metadata(RocketConfig):
        meta, dest = field.metadata, path.replace(".", "__")
        shown = list(default) if isinstance(default, tuple) else "auto" if default is None else default
        text = f"{meta['help']} ({path}, default: {shown})"  # None is what the word auto sets
        if field.type == "bool":
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            type_word = field.type.split(" ")[0].upper() + ("|auto" if field.type.endswith("| None") else "")
            group.add_argument(flag, dest=dest, default=None, choices=meta.get("choices"), help=text,
                               metavar=None if meta.get("choices") else type_word)


def config_from_args(args, base: RocketConfig | None = None) -> RocketConfig:
    """The config file (if any) with the flags given on the command line applied over it, all over
    ``base`` (default: the defaults; a warm start: the source run's config)."""
    base = RocketConfig.from_file(args.config, base) if args.config else (base or RocketConfig())
    return base.replace({path: getattr(args, path.replace(".", "__")) for path in flag_table(RocketConfig)})


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train light + booster towers on a Parquet click log",
                                   description=__doc__)
    parser.add_argument("--train", required=True, help="training data: file, folder or glob")
    parser.add_argument("--eval", help="evaluation data: file, folder or glob")
    parser.add_argument("--run-dir", required=True, help="outputs; re-running resumes from its checkpoint")
    parser.add_argument("--spec",
                        help="feature_spec.json (default: the one beside the data, else the reference schema)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--strategy", choices=("default", "multi-worker"), default="default",
                        help="default: this process; multi-worker: data-parallel over the TF_CONFIG cluster "
                             "(--batch-size per worker; parameter servers are not supported, see "
                             "docs/distributed.md) (default: %(default)s)")
    parser.add_argument("--warm-start", metavar="RUN_DIR",
                        help="start a new --run-dir from this run's weights (its config and feature spec are the "
                             "defaults; training settings and vocabularies may change, shapes and the feature set "
                             "may not)")
    parser.add_argument("--warm-start-optimizer", action=argparse.BooleanOptionalAction, default=True,
                        help="with --warm-start: also carry the optimizer state (Adam's moments; the learning rate "
                             "is always this run's) (default: %(default)s)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.errors import InputError
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.train.distributed import make_strategy
    from rocket_ctr.train.trainer import Trainer

    # first: before any other TensorFlow op
    strategy, task = make_strategy(args.strategy)
    spec = None
    if args.spec:
        try:
            spec = FeatureSpec.load(args.spec)
        except ValueError as err:
            raise InputError(str(err)) from None
    source = None
    if args.warm_start:
        from rocket_ctr.train.warm_start import WarmStartSource
        source = WarmStartSource.open(args.warm_start, args.run_dir)
    with discarded_if_refused(args.run_dir):
        trainer = Trainer(args.run_dir, args.train, args.eval, config_from_args(args, source and source.config),
                          spec, verbose=0 if args.quiet else 1, strategy=(strategy, task), field_names=field_flags(),
                          warm_start=source, warm_start_optimizer=args.warm_start_optimizer)
        if trainer.warm_started and task.is_chief:
            print(format_warm_start(trainer.warm_started))
        elif source is not None and task.is_chief:
            print(f"{args.run_dir} already holds checkpoints: resuming it (--warm-start applies to a new run dir only)")
        metrics = trainer.fit()
    if not task.is_chief:
        return 0
    print(format_metrics(metrics))
    print(f"run dir: {args.run_dir}  (metrics.json, curves.png, checkpoints/, tensorboard/)")
    return 0


@contextlib.contextmanager
def discarded_if_refused(run_dir):
    """Removes ``run_dir`` again when this command created it and bad input stopped the run before
    its first checkpoint (a bad row deep in the log): a refused run leaves nothing behind."""
    from rocket_ctr.errors import FieldError, InputError
    from rocket_ctr.train.run_dir import CHECKPOINTS

    run_dir = Path(run_dir)
    existed = run_dir.exists()
    try:
        yield
    except (InputError, FieldError):
        if not existed and run_dir.is_dir() and not any((run_dir / CHECKPOINTS).glob("ckpt-*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def format_metrics(metrics: dict) -> str:
    """A small table of the towers' eval metrics plus throughput."""
    lines = [f"mode {metrics['mode']}, {metrics['epochs']} epoch(s), "
             f"{metrics.get('train_examples_per_s') or 0:,.0f} train examples/s",
             f"{'tower':<8} {'auc':>8} {'gauc':>8} {'logloss':>8}"]
    for tower in ("light", "booster"):
        if tower in metrics:
            m = metrics[tower]
            lines.append(f"{tower:<8} {m['auc']:>8.4f} {m['gauc']:>8.4f} {m['logloss']:>8.4f}")
    return "\n".join(lines)


def format_warm_start(carried: dict) -> str:
    """One line on what a warm start carried over."""
    parts = [f"warm start from {carried['checkpoint']}",
             "weights and optimizer state" if carried["optimizer_state"] else "weights (fresh optimizer state)"]
    parts += [f"{name}: {c['kept']} ids kept, {c['new']} new, {c['dropped']} dropped"
              for name, c in carried["vocabulary"].items()]
    parts.append("hint already launched" if carried["hint_launched"] else "hint warm-up starts over")
    return "; ".join(parts)
