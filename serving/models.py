"""Loaded SavedModel versions, and the manager serving the highest version under a base path.

Mirrors TF Serving's default behaviour: the base path is polled, the highest complete version is
loaded and its warmup records replayed before it replaces the previous one (AVAILABLE), a version
that fails to load is reported and skipped, and requests are validated against the signature
before TensorFlow runs them. One difference, for a server that has nothing to serve yet: the
first version answers requests as soon as it is loaded while its warmup records are replayed in
the background (it is reported LOADING until they are done); ``serve_during_warmup=False`` waits
as TF Serving does.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from rocket_ctr.export.writer import list_versions, read_export_info
from rocket_ctr.serving.status import ServingError, invalid, not_found
from rocket_ctr.serving.warmup import PROGRESS_SECONDS, WarmupReplay, read_warmup

DEFAULT_SIGNATURE = "serving_default"


_ASSERT = re.compile(r"assertion failed: \[(?P<what>[^\]]*)\].*?\[x \([^)]*\) = \] \[(?P<x>[^\]]*)\]"
                     r"(?: \[y \([^)]*\) = \] \[(?P<y>[^\]]*)\])?", re.DOTALL)


def _first_line(message: str) -> str:
    """The useful part of a TensorFlow error: our graph asserts' text, else its first line."""
    match = _ASSERT.search(message)
    if match:
        values = match["x"] + (f" vs {match['y']}" if match["y"] is not None else "")
        return f"{match['what']} ({values})".replace("\\'", "'")
    lines = [ln.strip() for ln in message.splitlines() if ln.strip() and "Graph execution error" not in ln]
    return re.sub(r"\s*\[\[\{\{node .*", "", lines[0] if lines else message)


def _signature_defs(path: Path) -> get_model_metadata_pb2.SignatureDefMap:
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), saved.meta_graphs[0])
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, value in graph.signature_def.items():
        result.signature_def[key].CopyFrom(value)
    return result


class ServedModel:
    """One loaded version: its signatures, metadata and a validating ``predict``.

    Args:
        name: model name; version: version number; path: the version folder.
    """

    def __init__(self, name: str, version: int, path):
        self.name, self.version, self.path = name, int(version), Path(path)
        self._loaded = tf.saved_model.load(str(self.path))  # a SavedModel is code: load only your own
        self.functions = dict(self._loaded.signatures)
        self.inputs = {k: fn.structured_input_signature[1] for k, fn in self.functions.items()}
        self.signature_defs = _signature_defs(self.path)

    def predict(self, inputs: dict, decode: Callable, signature_name: str = "", output_filter=(),
                max_candidates: int | None = None) -> tuple[str, dict]:
        """Validates and runs one request.

        Args:
            inputs: {alias: encoded tensor}; decode(alias, value, dtype) -> numpy turns one into
                an array (JSON or TensorProto decoding, with its dtype check).
            signature_name: "" = serving_default.
            output_filter: output aliases to return (empty = all).
            max_candidates: refuse requests whose batch (N) is larger.
        Returns:
            (signature name, {output alias: numpy array}).
        Raises:
            ServingError: INVALID_ARGUMENT / FAILED_PRECONDITION naming the problem.
        """
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.functions:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        specs = self.inputs[name]
        extra, missing = sorted(set(inputs) - set(specs)), sorted(set(specs) - set(inputs))
        if extra or missing:
            raise invalid(f"input size does not match signature: {len(inputs)}!={len(specs)}. "
                          f"Sent extra: {extra}. Missing but required: {missing}.")
        arrays = {k: self._checked(k, decode(k, v, specs[k].dtype), specs[k]) for k, v in inputs.items()}
        batch = max((a.shape[0] for a in arrays.values() if a.ndim), default=0)
        if max_candidates and batch > max_candidates:
            raise invalid(f"request holds {batch} candidates/rows; this server refuses more than "
                          f"{max_candidates} (--max-candidates)")
        fn = self.functions[name]
        wanted = list(output_filter) or list(fn.structured_outputs)
        unknown = [k for k in wanted if k not in fn.structured_outputs]
        if unknown:
            raise invalid(f"output tensor alias not found in signature: {unknown[0]}")
        try:
            outputs = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in arrays.items()})
        except tf.errors.InvalidArgumentError as err:
            raise invalid(_first_line(err.message)) from None
        except tf.errors.OpError as err:
            raise ServingError(grpc.StatusCode.INTERNAL, _first_line(err.message)) from None
        return name, {k: outputs[k].numpy() for k in wanted}

    @staticmethod
    def _checked(alias: str, array: np.ndarray, spec: tf.TensorSpec) -> np.ndarray:
        expected = spec.shape.as_list()
        if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
            shown = [-1 if e is None else e for e in expected]
            raise invalid(f"input '{alias}': expects shape {shown} but got {list(array.shape)}")
        if array.ndim and array.shape[0] == 0:
            raise invalid(f"input '{alias}': empty batch (N = 0); send at least one candidate/row")
        return array


def describe_export(path: Path) -> str:
    """``light tower, XLA`` (from the export's ``rocket_ctr_export.json``), else what is known."""
    info = read_export_info(path)
    if "jit_compile" not in info:
        return "a SavedModel without rocket_ctr_export.json"
    return f"{info.get('tower', '?')} tower, {'XLA' if info['jit_compile'] else 'no XLA'}"


class ModelManager:
    """Serves the highest version under ``base_path``, polling for newer ones.

    Args:
        name: the model name clients use.
        base_path: the export base (numeric version folders).
        poll_seconds: seconds between polls (0: look once).
        warmup: replay warmup records at load.
        max_candidates: the largest N a request may carry.
        log: callable for one-line status messages.
        warmup_threads: warmup requests replayed at once.
        serve_during_warmup: while nothing is served yet, answer with a newly loaded version during
            its warmup (replayed in the background). A version replacing a served one is always
            warmed up before it takes over.
        progress_seconds: seconds between warmup progress messages.
    """

    def __init__(self, name: str, base_path, poll_seconds: float = 1.0, warmup: bool = True,
                 max_candidates: int | None = 1000, log: Callable = print, warmup_threads: int = 1,
                 serve_during_warmup: bool = True, progress_seconds: float = PROGRESS_SECONDS):
        self.name, self.base = name, Path(base_path)
        self.poll_seconds, self.warmup, self.max_candidates, self.log = poll_seconds, warmup, max_candidates, log
        self.warmup_threads, self.serve_during_warmup = warmup_threads, serve_during_warmup
        self.progress_seconds = progress_seconds
        self.current: ServedModel | None = None
        self.states: dict[int, tuple[str, str]] = {}  # version -> (state name, error message)
        self.background: WarmupReplay | None = None  # the served version's warmup while it runs
        self._lock = threading.Lock()

    def poll(self) -> None:
        """Loads the highest version if it is not the one served (and has not failed before)."""
        versions = list_versions(self.base)
        if not versions:
            return
        target = versions[-1]
        if (self.current and self.current.version == target) or target in self.states:
            return
        with self._lock:
            self.states[target] = ("LOADING", "")
        path = self.base / str(target)
        self.log(f"loading model {self.name!r} version {target} from {path} ({describe_export(path)})")
        started = time.perf_counter()
        try:
            model = ServedModel(self.name, target, path)
            requests = read_warmup(path) if self.warmup else []
        except Exception as err:  # noqa: BLE001 - a bad version must not stop the server
            self._failed(target, err)
            return
        replay = WarmupReplay(model, requests, self.warmup_threads, self.log, self.progress_seconds)
        loaded = f"model {self.name!r} version {target} loaded in {time.perf_counter() - started:.1f} s"
        if requests and self.current is None and self.serve_during_warmup:
            with self._lock:
                self.current, self.background = model, replay  # answers now; AVAILABLE once warm
            self.log(f"{loaded}: answering requests while its {len(requests)} warmup requests are replayed in "
                     "the background (a request shape not warm yet is compiled on its first request)")
            threading.Thread(target=self._warm_up, args=(model, replay), name="warmup", daemon=True).start()
            return
        if requests:
            self.log(f"{loaded}: replaying its {len(requests)} warmup requests before it answers")
        self._warm_up(model, replay)

    def _warm_up(self, model: ServedModel, replay: WarmupReplay) -> None:
        """Replays the warmup of ``model``, then makes it the AVAILABLE version."""
        try:
            replayed = replay.run()
        except Exception as err:  # noqa: BLE001 - a bad version must not stop the server
            self._failed(model.version, err, model)
            return
        with self._lock:
            if replay.cancelled:  # a newer version took over meanwhile
                return
            previous, self.current = self.current, model
            self.states[model.version] = ("AVAILABLE", "")
            if previous is not None and previous is not model:
                self.states[previous.version] = ("END", "")
            if self.background is not None and self.background is not replay:
                self.background.stop()  # the version it was warming is retired
            self.background = None
        self.log(f"model {self.name!r} version {model.version} AVAILABLE: {replayed} warmup requests replayed "
                 f"in {replay.elapsed:.1f} s")

    def _failed(self, version: int, err: Exception, model: ServedModel | None = None) -> None:
        message = err.message if isinstance(err, ServingError) else f"{type(err).__name__}: {err}"
        with self._lock:
            self.states[version] = ("END", f"load failed: {message}")
            if model is not None and self.current is model:  # its warmup failed while it answered
                self.current, self.background = None, None
        self.log(f"model {self.name!r} version {version}: load failed ({message})")

    def run(self, stop: threading.Event) -> None:
        """Polls until ``stop`` is set."""
        while True:
            try:
                self.poll()
            except OSError as err:
                self.log(f"cannot read {self.base}: {err}")
            if self.poll_seconds <= 0 or stop.wait(self.poll_seconds):
                return

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The served model for a request, or NOT_FOUND."""
        current = self.current
        if name != self.name or current is None or (version is not None and version != current.version):
            wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {wanted}")
        return current

    def status(self, name: str, version: int | None = None) -> list[tuple[int, str, str]]:
        """[(version, state, error message)], newest first, or NOT_FOUND."""
        with self._lock:
            items = sorted(self.states.items(), reverse=True)
        if name != self.name or not items:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            items = [item for item in items if item[0] == version]
            if not items:
                raise not_found(f"Could not find version {version} of model {name}")
        return [(v, state, error) for v, (state, error) in items]
