"""A TF-Serving-protocol TEST server: a stand-in for ``tensorflow_model_server`` in tests and benchmarks.

Production serving is TensorFlow Serving (the Dockerfile's ``serving`` target); its binary cannot
be installed on the machines this project is developed on, so this server speaks the same gRPC
(``PredictionService``, ``ModelService``) and REST (``/v1/models``) APIs, and TensorFlow runs the
SavedModel. It serves the highest version under ``model_base``, picks up newer versions, and
replays their warmup records at load (the first version answers during its warmup, see
:class:`rocket_ctr.serving.models.ModelManager`). Status lines go to stderr: what it loads, how far
the warmup is, when it answers.

A SavedModel is code: serve only exports you made. The server binds 127.0.0.1 unless ``host``
says otherwise.

    from rocket_ctr.serving.server import serve
    serve("exports/light", model_name="rocket_ctr", grpc_port=8500, rest_port=8501)

``rocket-ctr serve`` (``rocket_ctr.pipelines.serve``) is the command line over :func:`serve`,
with tensorflow_model_server's flag names.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rocket_ctr.errors import FieldError, InputError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeArgumentError(FieldError):
    """A bad argument of :func:`serve`; the message names it as a ``{argument}`` placeholder, so a
    command line can show its own flag instead (:meth:`FieldError.render`)."""


def _say(message: str) -> None:
    print(f"rocket-ctr serve: {message}", file=sys.stderr, flush=True)


def _use_xla_cache(directory: Path) -> None:
    """Points TensorFlow's persistent XLA compilation cache at ``directory`` (read when this
    process compiles with XLA for the first time)."""
    directory.mkdir(parents=True, exist_ok=True)
    flags = os.environ.get("TF_XLA_FLAGS", "")
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={directory}".strip()


def serve(model_base: str | Path, *, model_name: str = "model", host: str = "127.0.0.1",
          grpc_port: int = 8500, rest_port: int = 8501, max_candidates: int = 1000,
          poll_seconds: float = 1.0, warmup: bool = True, intra_op_threads: int = 0,
          inter_op_threads: int = 0, grpc_threads: int = 16, warmup_threads: int = 1,
          serve_during_warmup: bool = True, xla_cache_dir: str | Path | None = None,
          stop: threading.Event | None = None, log: Callable[[str], None] = _say) -> int:
    """Serves the highest version under ``model_base`` over gRPC and REST until stopped.

    Args:
        model_base: export base holding numeric version folders.
        model_name: the name clients use.
        host: address to bind (loopback by default; anything else is logged as a warning).
        grpc_port: gRPC port (>= 1).
        rest_port: REST port; 0 = no REST API.
        max_candidates: requests with more candidates/rows get INVALID_ARGUMENT.
        poll_seconds: seconds between polls for a new version; 0 = look once.
        warmup: replay ``assets.extra/tf_serving_warmup_requests`` at load.
        intra_op_threads, inter_op_threads: TensorFlow thread pools; 0 = auto (others need a
            process in which TensorFlow has not started yet).
        grpc_threads: gRPC worker threads.
        warmup_threads: warmup requests replayed at once.
        serve_during_warmup: the first version answers as soon as it is loaded while its warmup
            runs in the background (reported LOADING until done); False: it answers once warm, as
            TF Serving does. A newer version always takes over only once warm.
        xla_cache_dir: TensorFlow's persistent XLA compilation cache (``TF_XLA_FLAGS=
            --tf_xla_persistent_cache_directory``): later starts on this machine load the compiled
            programs instead of compiling them. Effective only in a process that has not compiled
            with XLA yet (the command line always).
        stop: serve until this event is set; None = until SIGINT/SIGTERM (main thread only).
        log: callable for one-line status messages.
    Returns:
        0 once stopped.
    Raises:
        ServeArgumentError: a bad argument; InputError: the ports cannot be bound.
    """
    base = Path(model_base)
    if not base.is_dir():
        raise ServeArgumentError(f"{{model_base}} {base}: no such folder (export a model first)")
    if grpc_port < 1 or rest_port < 0:
        raise ServeArgumentError("{grpc_port} must be a port number >= 1 and {rest_port} >= 0 (0 = no REST)")
    if max_candidates < 1:
        raise ServeArgumentError(f"{{max_candidates}} must be >= 1, got {max_candidates}")
    if warmup_threads < 1:
        raise ServeArgumentError(f"{{warmup_threads}} must be >= 1, got {warmup_threads}")
    if xla_cache_dir is not None:
        if any(c.isspace() for c in str(xla_cache_dir)):
            raise ServeArgumentError(f"{{xla_cache_dir}} {xla_cache_dir}: TF_XLA_FLAGS cannot hold a path with spaces")
        try:
            _use_xla_cache(Path(xla_cache_dir))
        except OSError as err:
            raise ServeArgumentError(f"{{xla_cache_dir}} {xla_cache_dir}: {err.strerror}") from None
    import tensorflow as tf

    try:  # 0 (auto) is left alone: TensorFlow refuses any change once it has started
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError as err:
        raise InputError(f"thread pools must be set before TensorFlow starts in this process ({err})") from None
    from rocket_ctr.serving.grpc_api import start_grpc
    from rocket_ctr.serving.models import ModelManager
    from rocket_ctr.serving.rest_api import start_rest

    if host not in LOOPBACK:
        log(f"WARNING: binding {host}: this test server has no authentication; keep it off public networks")
    manager = ModelManager(model_name, base, poll_seconds, warmup, max_candidates, log=log,
                           warmup_threads=warmup_threads, serve_during_warmup=serve_during_warmup)
    manager.poll()  # load what is there before listening (and warm it up unless it answers meanwhile)
    if manager.current is None:
        log(f"no loadable version under {base} yet; waiting for one")
    grpc_server = None
    try:
        grpc_server, bound = start_grpc(manager, host, grpc_port, grpc_threads)
        httpd = start_rest(manager, host, rest_port)[0] if rest_port else None
    except (OSError, RuntimeError) as err:
        if grpc_server is not None:
            grpc_server.stop(grace=0)
        raise InputError(f"cannot listen on {host}:{grpc_port}/{rest_port} ({err})") from None
    rest = f", REST http://{host}:{rest_port}" if httpd else ""
    state = "answering" if manager.current is not None else "listening"
    log(f"model {model_name!r}: {state} on gRPC {host}:{bound}{rest} (test server; production uses TensorFlow Serving)")
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    poller = threading.Thread(target=manager.run, args=(stop,), name="version-poller", daemon=True)
    poller.start()
    while not stop.wait(0.5):
        pass
    log("shutting down")
    if manager.background is not None:
        manager.background.stop()
    if httpd:
        httpd.shutdown()
        httpd.server_close()
    grpc_server.stop(grace=2).wait(5)
    return 0
