"""``rocket-ctr serve``: the TF-Serving-protocol TEST server (a stand-in for tests and benchmarks;
production serving is TensorFlow Serving, see the Dockerfile's ``serving`` target).

A thin layer over :func:`rocket_ctr.serving.server.serve`: tensorflow_model_server's flag names
(where it has one), translated to the function's arguments.
"""
from __future__ import annotations

import argparse

HELP = "TF-Serving-protocol TEST server (a stand-in for tests/benchmarks; production uses TensorFlow Serving)"
DESCRIPTION = (
    "A stand-in for tensorflow_model_server, for tests and benchmarks only: it speaks TF Serving's "
    "gRPC and REST APIs, serves the highest version under --model_base_path (picking up newer ones) "
    "and replays warmup records at load; the first version answers while its warmup runs in the "
    "background (reported LOADING until it is done). Status lines go to stderr. The production "
    "server is TensorFlow Serving (see the Dockerfile's serving target). A SavedModel is code: "
    "serve only exports you made.")
# serve()'s arguments whose flag is not their name (tensorflow_model_server's), for its error messages;
# the CLI names every other field by the option of the same name
FIELD_FLAGS = {"model_base": "--model_base_path", "grpc_port": "--port", "rest_port": "--rest_api_port"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags (tensorflow_model_server's names where it has one)."""
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port (default: %(default)s)")
    add("--rest_api_port", type=int, default=8501, help="REST port; 0 = no REST API (default: %(default)s)")
    add("--model_name", default="model", help="name clients use (default: %(default)s)")
    add("--model_base_path", required=True, help="export base holding numeric version folders")
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    add("--max-candidates", type=int, default=1000,
        help="refuse requests with more candidates/rows than this, INVALID_ARGUMENT (default: %(default)s)")
    add("--file_system_poll_wait_seconds", type=float, default=1.0,
        help="seconds between polls for a new version; 0 = look once (default: %(default)s)")
    add("--enable_model_warmup", action=argparse.BooleanOptionalAction, default=True,
        help="replay assets.extra/tf_serving_warmup_requests at load (default: on)")
    add("--tensorflow_intra_op_parallelism", type=int, default=0, help="threads per op; 0 = auto")
    add("--tensorflow_inter_op_parallelism", type=int, default=0, help="ops run at once; 0 = auto")
    add("--grpc_max_threads", type=int, default=16, help="gRPC worker threads (default: %(default)s)")
    add("--serve-during-warmup", action=argparse.BooleanOptionalAction, default=True,
        help="answer with the first version as soon as it is loaded, its warmup replayed in the background "
             "(a request shape not warm yet is compiled on its first request); --no-serve-during-warmup "
             "answers only once warm, as TF Serving does. A newer version always takes over once warm "
             "(default: on)")
    add("--warmup-threads", type=int, default=1,
        help="warmup requests replayed at once (default: %(default)s)")
    add("--xla-cache-dir", default=None, metavar="DIR",
        help="keep compiled XLA programs in DIR (TensorFlow's persistent XLA cache) so later starts on this "
             "machine load them instead of compiling; one DIR per machine type (default: none)")


def field_flags() -> dict[str, str]:
    """How this command names serve()'s arguments in error messages: its flags."""
    return FIELD_FLAGS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help=HELP, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from rocket_ctr.serving.server import serve

    return serve(args.model_base_path, model_name=args.model_name, host=args.host, grpc_port=args.port,
                 rest_port=args.rest_api_port, max_candidates=args.max_candidates,
                 poll_seconds=args.file_system_poll_wait_seconds, warmup=args.enable_model_warmup,
                 intra_op_threads=args.tensorflow_intra_op_parallelism,
                 inter_op_threads=args.tensorflow_inter_op_parallelism, grpc_threads=args.grpc_max_threads,
                 warmup_threads=args.warmup_threads, serve_during_warmup=args.serve_during_warmup,
                 xla_cache_dir=args.xla_cache_dir)
