"""``rocket-ctr train``: train a RocketModel on Parquet logs into a run dir (resumable)."""
from __future__ import annotations

import argparse
import dataclasses

from rocket_ctr.config import MODES, RocketConfig

# CLI flag -> RocketConfig field, for the flags the issue names plus the model's shape.
FLAGS = {
    "--mode": dict(choices=MODES), "--hint": dict(choices=("mimic", "mse", "kd")),
    "--hint-weight": dict(type=float, help="λ of eq. (1)"), "--temperature": dict(type=float, help="T of the kd hint"),
    "--epochs": dict(type=int), "--booster-epochs": dict(type=int, help="two-stage: epochs of stage 1"),
    "--batch-size": dict(type=int), "--learning-rate": dict(type=float), "--seed": dict(type=int),
    "--embedding-dim": dict(type=int), "--light-units": dict(help="comma-separated widths, e.g. 200,80"),
    "--booster-units": dict(help="comma-separated widths"), "--booster-dropout": dict(type=float),
    "--booster-l2": dict(type=float), "--checkpoint-every": dict(type=int, help="steps between checkpoints"),
    "--shuffle-buffer": dict(type=int),
    "--hint-launch-metric": dict(choices=("logloss", "gauc"),
                                 help="what the booster must beat the light tower on, on validation users, "
                                      "before the warm-up launches it"),
    "--validation-fraction": dict(type=float, help="share of users held out of --train, evaluated every epoch"),
    "--early-stopping-patience": dict(type=int, help="epochs without a better light validation GAUC "
                                                      "before stopping; restores the best weights (0 = off)"),
}
BOOLEAN_FLAGS = {
    "--gradient-block": "the hint never updates the booster (stop_gradient on its logit)",
    "--hint-warmup": "λ stays 0 (and the booster off the shared bottom) until the booster leads the light "
                     "tower on validation users (--hint-launch-metric), then ramps up",
    "--hint-gate": "apply the hint only where the booster's cross-entropy is lower than the light tower's",
    "--hint-trains-bottom": "the hint's gradient also trains the shared bottom (the paper); "
                            "--no-hint-trains-bottom: the light tower's own layers only",
    "--share": "both towers read one shared embedding/attention bottom",
    "--detach-light": "the light tower does not train the shared bottom",
    "--booster-batch-norm": "BatchNorm in the booster's layers",
    "--jit-compile": "XLA-compile the training step",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--config FILE`` and one flag per RocketConfig field the CLI exposes (default: unset)."""
    parser.add_argument("--config", help="YAML or JSON file of config fields; flags override it")
    for flag, options in FLAGS.items():
        parser.add_argument(flag, default=None, **options)
    for flag, text in BOOLEAN_FLAGS.items():
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)


def config_from_args(args) -> RocketConfig:
    base = RocketConfig.from_file(args.config) if args.config else RocketConfig()
    names = {f.name for f in dataclasses.fields(RocketConfig)}
    return base.replace(**{k: v for k, v in vars(args).items() if k in names})


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train light + booster towers on a Parquet click log",
                                   description=__doc__)
    parser.add_argument("--train", required=True, help="training data: file, folder or glob")
    parser.add_argument("--eval", help="evaluation data: file, folder or glob")
    parser.add_argument("--run-dir", required=True, help="outputs; re-running resumes from its checkpoint")
    parser.add_argument("--spec",
                        help="feature_spec.json (default: the one beside the data, else the reference schema)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--strategy", choices=("default", "multi-worker", "parameter-server"), default="default",
                        help="default: this process; multi-worker: data-parallel over the TF_CONFIG cluster "
                             "(--batch-size per worker); parameter-server: refused with the reason, see the README "
                             "(default: %(default)s)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.distributed import make_strategy
    from rocket_ctr.spec import FeatureSpec
    from rocket_ctr.trainer import Trainer
    from rocket_ctr.errors import InputError

    # first: before any other TensorFlow op; parameter-server is refused here with the reason
    strategy, task = make_strategy(args.strategy)
    spec = None
    if args.spec:
        try:
            spec = FeatureSpec.load(args.spec)
        except ValueError as err:
            raise InputError(str(err)) from None
    trainer = Trainer(args.run_dir, args.train, args.eval, config_from_args(args), spec,
                      verbose=0 if args.quiet else 1, strategy=(strategy, task))
    metrics = trainer.fit()
    if not task.is_chief:
        return 0
    print(format_metrics(metrics))
    print(f"run dir: {args.run_dir}  (metrics.json, curves.png, checkpoints/, tensorboard/)")
    return 0


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
