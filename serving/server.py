"""A TF-Serving-protocol TEST server: a stand-in for ``tensorflow_model_server`` in tests and benchmarks.

Production serving is TensorFlow Serving (the Dockerfile's ``serving`` target); its binary cannot
be installed on the machines this project is developed on, so this server speaks the same gRPC
(``PredictionService``, ``ModelService``) and REST (``/v1/models``) APIs, with the same flag names,
and TensorFlow runs the SavedModel. It serves the highest version under ``--model_base_path``,
picks up newer versions, and replays their warmup records at load.

A SavedModel is code: serve only exports you made. The server binds 127.0.0.1 unless ``--host``
says otherwise.

    python -m rocket_ctr.serving.server --port 8500 --rest_api_port 8501 \\
        --model_name rocket_ctr --model_base_path exports/light
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from rocket_ctr.errors import InputError

HELP = "TF-Serving-protocol TEST server (a stand-in for tests/benchmarks; production uses TensorFlow Serving)"
DESCRIPTION = (
    "A stand-in for tensorflow_model_server, for tests and benchmarks only: it speaks TF Serving's "
    "gRPC and REST APIs, serves the highest version under --model_base_path (picking up newer ones) "
    "and replays warmup records at load. The production server is TensorFlow Serving (see the "
    "Dockerfile's serving target). A SavedModel is code: serve only exports you made.")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def _say(message: str) -> None:
    print(f"rocket-ctr serve: {message}", flush=True)


def serve(args) -> int:
    """Runs the server until SIGINT/SIGTERM. Raises InputError for bad flags or busy ports."""
    base = Path(args.model_base_path)
    if not base.is_dir():
        raise InputError(f"--model_base_path {base}: no such folder (export a model first)")
    if args.port < 1 or args.rest_api_port < 0:
        raise InputError("--port must be a port number >= 1 and --rest_api_port >= 0 (0 = no REST)")
    if args.max_candidates < 1:
        raise InputError(f"--max-candidates must be >= 1, got {args.max_candidates}")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    from rocket_ctr.serving.grpc_api import start_grpc
    from rocket_ctr.serving.models import ModelManager
    from rocket_ctr.serving.rest_api import start_rest

    if args.host not in LOOPBACK:
        _say(f"WARNING: binding {args.host}: this test server has no authentication; keep it off public networks")
    manager = ModelManager(args.model_name, base, args.file_system_poll_wait_seconds,
                           args.enable_model_warmup, args.max_candidates, log=_say)
    manager.poll()  # like tensorflow_model_server: load what is there before listening
    if manager.current is None:
        _say(f"no loadable version under {base} yet; waiting for one")
    try:
        grpc_server, grpc_port = start_grpc(manager, args.host, args.port, args.grpc_max_threads)
        httpd = start_rest(manager, args.host, args.rest_api_port)[0] if args.rest_api_port else None
    except (OSError, RuntimeError) as err:
        raise InputError(f"cannot listen on {args.host}:{args.port}/{args.rest_api_port} ({err})") from None
    rest = f", REST http://{args.host}:{args.rest_api_port}" if httpd else ""
    _say(f"model {args.model_name!r}: gRPC {args.host}:{grpc_port}{rest} "
         "(test server; production uses TensorFlow Serving)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    poller = threading.Thread(target=manager.run, args=(stop,), name="version-poller", daemon=True)
    poller.start()
    while not stop.wait(0.5):
        pass
    _say("shutting down")
    if httpd:
        httpd.shutdown()
    grpc_server.stop(grace=2).wait(5)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m rocket_ctr.serving.server``: same flags as ``rocket-ctr serve``."""
    parser = argparse.ArgumentParser(prog="python -m rocket_ctr.serving.server", description=DESCRIPTION)
    add_arguments(parser)
    try:
        return serve(parser.parse_args(argv))
    except InputError as err:
        print(f"rocket-ctr serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
