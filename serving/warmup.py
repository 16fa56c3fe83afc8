"""Replay of a version's warmup records (``assets.extra/tf_serving_warmup_requests``) at load.

Each record is one ``PredictRequest``; with an XLA export its first run compiles the program of
its (history bucket, candidate bucket) shape, so replaying the records before traffic arrives
keeps compilations out of request latencies. The replay reports how far it is, can run records
on several threads, and stops early when the version is superseded.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from rocket_ctr.export.warmup import MAX_WARMUP_RECORDS
from rocket_ctr.export.writer import WARMUP_FILE
from rocket_ctr.serving.tensors import from_proto

PROGRESS_SECONDS = 5.0


def read_warmup(version_dir) -> list:
    """The ``PredictRequest``s of a version's warmup file, in file order (at most 1000).

    Returns:
        [] when the version has no warmup file.
    """
    path = Path(version_dir) / "assets.extra" / WARMUP_FILE
    if not path.is_file():
        return []
    requests = []
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.HasField("predict_log"):
            requests.append(log.predict_log.request)
    return requests


class WarmupReplay:
    """Runs warmup requests against one loaded version.

    Args:
        model: a :class:`rocket_ctr.serving.models.ServedModel`.
        requests: ``PredictRequest``s (:func:`read_warmup`).
        threads: requests run at once (1: in file order).
        log: callable for one-line progress messages.
        progress_seconds: seconds between progress messages (one also follows the first request).
    Attributes:
        done: requests replayed so far; cancelled: :meth:`stop` was called; elapsed: seconds so far.
    """

    def __init__(self, model, requests: list, threads: int = 1, log: Callable = print,
                 progress_seconds: float = PROGRESS_SECONDS):
        self.model, self.requests, self.threads, self.log = model, list(requests), max(1, threads), log
        self.progress_seconds = progress_seconds
        self.done, self.cancelled = 0, False
        self._halt, self._lock = threading.Event(), threading.Lock()
        self._started = self._said = None

    @property
    def elapsed(self) -> float:
        return 0.0 if self._started is None else time.perf_counter() - self._started

    def stop(self) -> None:
        """Stops after the requests running now (the version was superseded)."""
        self.cancelled = True
        self._halt.set()

    def run(self) -> int:
        """Replays the requests (until :meth:`stop`).

        Returns:
            How many ran.
        Raises:
            ServingError (or a TensorFlow error): a request failed; the others are not started.
        """
        self._started = self._said = time.perf_counter()
        if self.threads == 1:
            for request in self.requests:
                self._one(request)
        else:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="warmup") as pool:
                list(pool.map(self._one, self.requests))
        return self.done

    def _one(self, request) -> None:
        if self._halt.is_set():
            return
        try:
            self.model.predict(request.inputs, from_proto, request.model_spec.signature_name)
        except BaseException:
            self._halt.set()
            raise
        with self._lock:
            self.done += 1
            now, done, total = time.perf_counter(), self.done, len(self.requests)
            due = done < total and (done == 1 or now - self._said >= self.progress_seconds)
            if due:
                self._said = now
        if due:
            self.log(f"model {self.model.name!r} version {self.model.version}: warmup {done}/{total} requests, "
                     f"{now - self._started:.0f} s")
