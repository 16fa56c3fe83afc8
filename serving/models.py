"""Loaded SavedModel versions, and the manager serving the highest version under a base path.

Mirrors TF Serving's default behaviour: the base path is polled, the highest complete version is
loaded (its warmup records replayed) before it replaces the previous one, a version that fails to
load is reported and skipped, and requests are validated against the signature before TensorFlow
runs them.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from rocket_ctr.export.writer import WARMUP_FILE, list_versions
from rocket_ctr.serving.status import ServingError, invalid, not_found
from rocket_ctr.serving.tensors import from_proto

DEFAULT_SIGNATURE = "serving_default"
MAX_WARMUP_RECORDS = 1000


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

    def replay_warmup(self) -> int:
        """Runs the ``assets.extra`` warmup records once (as TF Serving does at load)."""
        path = self.path / "assets.extra" / WARMUP_FILE
        if not path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.HasField("predict_log"):
                request = log.predict_log.request
                self.predict(request.inputs, from_proto, request.model_spec.signature_name)
                count += 1
        return count


class ModelManager:
    """Serves the highest version under ``base_path``, polling for newer ones.

    Args:
        name: the model name clients use.
        base_path: the export base (numeric version folders).
        poll_seconds: seconds between polls (0: look once).
        warmup: replay warmup records at load.
        max_candidates: the largest N a request may carry.
        log: callable for one-line status messages.
    """

    def __init__(self, name: str, base_path, poll_seconds: float = 1.0, warmup: bool = True,
                 max_candidates: int | None = 1000, log: Callable = print):
        self.name, self.base = name, Path(base_path)
        self.poll_seconds, self.warmup, self.max_candidates, self.log = poll_seconds, warmup, max_candidates, log
        self.current: ServedModel | None = None
        self.states: dict[int, tuple[str, str]] = {}  # version -> (state name, error message)
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
        try:
            model = ServedModel(self.name, target, self.base / str(target))
            replayed = model.replay_warmup() if self.warmup else 0
        except Exception as err:  # noqa: BLE001 - a bad version must not stop the server
            message = err.message if isinstance(err, ServingError) else f"{type(err).__name__}: {err}"
            with self._lock:
                self.states[target] = ("END", f"load failed: {message}")
            self.log(f"model {self.name!r} version {target}: load failed ({message})")
            return
        with self._lock:
            previous, self.current = self.current, model
            self.states[target] = ("AVAILABLE", "")
            if previous is not None:
                self.states[previous.version] = ("END", "")
        self.log(f"model {self.name!r} version {target} AVAILABLE ({replayed} warmup requests replayed)")

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
