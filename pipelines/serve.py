"""``rocket-ctr serve``: the TF-Serving-protocol TEST server (a stand-in for tests and benchmarks;
production serving is TensorFlow Serving, see the Dockerfile's ``serving`` target)."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    from rocket_ctr.serving.server import DESCRIPTION, HELP, add_arguments

    parser = subparsers.add_parser("serve", help=HELP, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.serving.server import serve

    return serve(args)
