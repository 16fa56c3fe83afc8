"""Clients of the TF Serving API: gRPC ``PredictionService`` and REST ``/v1/models``.

They talk to any TF Serving endpoint (TensorFlow Serving in production, the test server here) and
build a one-user request from the model's own signature (fetched once from its metadata), so they
need no FeatureSpec: inputs of shape [1] are the user's profile, [1, L] the user's history, [N]
the candidates.

    with connect("grpc://127.0.0.1:8500", model_name="rocket_ctr") as client:
        p = client.score(user={"user_gender": "F", "user_occupation": "3", "hist_item_id": [5, 9],
                               "hist_cate_id": [1, 1]},
                         candidates={"item_id": [7, 8, 9], "cate_id": [1, 2, 2]})
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
from urllib.parse import urlsplit

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from rocket_ctr.errors import InputError
from rocket_ctr.serving.status import ServingError
from rocket_ctr.serving.tensors import as_array, to_json, to_proto

SERVING_DEFAULT = "serving_default"


# ----- building a one-user request -------------------------------------------------------------
def _columns(candidates) -> dict:
    """Candidates as {column: list}: from a dict of columns or a list of row dicts."""
    if isinstance(candidates, dict):
        return dict(candidates)
    rows = list(candidates)
    if rows and all(isinstance(r, dict) for r in rows):
        return {k: [r.get(k) for r in rows] for k in rows[0]}
    raise InputError("candidates must be a dict of columns or a list of row dicts")


def _typed(name: str, value, dtype: tf.DType, shape) -> np.ndarray:
    try:
        if dtype == tf.string:
            flat = [v if isinstance(v, bytes) else str(v).encode() for v in np.asarray(value, dtype=object).ravel()]
            array = np.empty(len(flat), dtype=object)
            array[:] = flat
            return array.reshape(shape)
        return np.asarray(value, dtype=dtype.as_numpy_dtype).reshape(shape)
    except (TypeError, ValueError) as err:
        raise InputError(f"'{name}': cannot use {value!r:.60} as {dtype.name} ({err})") from None


def one_user_inputs(signature: dict, user: dict, candidates) -> dict:
    """Inputs of a ``serving_default`` request: one user and N candidates.

    Args:
        signature: {input alias: (tf.DType, shape with -1 for any size)}.
        user: the user's columns: profile values and history lists (oldest -> newest).
        candidates: {column: [N values]} or a list of N row dicts (e.g. Parquet rows).
    Returns:
        {alias: numpy array}.
    Raises:
        InputError: a column the signature needs is missing, or lengths differ.
    """
    columns, inputs = _columns(candidates), {}
    for alias, (dtype, shape) in signature.items():
        if len(shape) == 2:  # history [1, L]
            if alias not in user:
                raise InputError(f"user has no '{alias}' (history list the model needs)")
            history = list(np.asarray(user[alias], dtype=object).ravel()) if user[alias] is not None else []
            inputs[alias] = _typed(alias, history, dtype, (1, len(history)))
        elif list(shape) == [1]:  # user profile
            if alias not in user:
                raise InputError(f"user has no '{alias}' (profile value the model needs)")
            value = np.asarray(user[alias], dtype=object).ravel()
            inputs[alias] = _typed(alias, value[:1] if value.size else value, dtype, (1,))
        else:  # candidates [N]
            if alias not in columns:
                raise InputError(f"candidates have no '{alias}' (candidate column the model needs)")
            inputs[alias] = _typed(alias, columns[alias], dtype, (-1,))
    sizes = {len(inputs[a]) for a, (_, s) in signature.items() if list(s) == [-1]}
    if len(sizes) > 1:
        raise InputError(f"candidate columns have different lengths {sorted(sizes)}")
    return inputs


def rows_from_parquet(path, start: int = 0, count: int = 1, columns=None) -> list[dict]:
    """Rows ``start .. start+count`` of a Parquet file as dicts (a user row, candidate rows)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns)
    if not 0 <= start < table.num_rows:
        raise InputError(f"{path}: row {start} out of range (file has {table.num_rows} rows)")
    return table.slice(start, count).to_pylist()


def _signature(defs: get_model_metadata_pb2.SignatureDefMap, name: str) -> tuple[dict, dict]:
    if name not in defs.signature_def:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    sig = defs.signature_def[name]
    inputs = {alias: (tf.dtypes.as_dtype(info.dtype), [d.size for d in info.tensor_shape.dim])
              for alias, info in sig.inputs.items()}
    outputs = {alias: tf.dtypes.as_dtype(info.dtype) for alias, info in sig.outputs.items()}
    return inputs, outputs


# ----- clients ---------------------------------------------------------------------------------------
class ServingClient:
    """Base of the gRPC and REST clients.

    Args:
        address: ``HOST:PORT``.
        model_name: the served model's name; version: a fixed version (None: the latest).
        timeout: seconds per call.
    """

    def __init__(self, address: str, model_name: str = "model", version: int | None = None,
                 timeout: float = 10.0):
        self.address, self.model_name, self.version, self.timeout = address, model_name, version, timeout
        self._signatures = {}

    def signature(self, name: str = SERVING_DEFAULT) -> tuple[dict, dict]:
        """({input alias: (tf.DType, shape)}, {output alias: tf.DType}) of a signature (cached)."""
        if name not in self._signatures:
            self._signatures[name] = _signature(self.signature_defs(), name)
        return self._signatures[name]

    def score(self, user: dict, candidates) -> np.ndarray:
        """Click probabilities [N] for one user and N candidates (``serving_default``)."""
        inputs = one_user_inputs(self.signature()[0], user, candidates)
        outputs = self.predict(inputs)
        return outputs.get("probabilities", next(iter(outputs.values())))

    def predict(self, inputs: dict, signature_name: str = SERVING_DEFAULT) -> dict:
        """{alias: array} in, {output alias: numpy array} out. Raises ServingError."""
        raise NotImplementedError

    def signature_defs(self) -> get_model_metadata_pb2.SignatureDefMap:
        raise NotImplementedError

    def status(self) -> list[dict]:
        """[{"version": int, "state": "AVAILABLE" | ..., "error": str}]."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GrpcClient(ServingClient):
    """``PredictionService`` / ``ModelService`` over gRPC (the low-latency path)."""

    def __init__(self, address: str, model_name: str = "model", version: int | None = None, timeout: float = 10.0):
        super().__init__(address, model_name, version, timeout)
        self.channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def _spec(self, spec, signature_name: str = "") -> None:
        spec.name = self.model_name
        if signature_name:
            spec.signature_name = signature_name
        if self.version is not None:
            spec.version.value = self.version

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServingError(err.code(), err.details() or "") from None

    def predict(self, inputs: dict, signature_name: str = SERVING_DEFAULT) -> dict:
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature_name)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(to_proto(value))
        response = self._call(self.predictions.Predict, request)
        return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}

    def signature_defs(self) -> get_model_metadata_pb2.SignatureDefMap:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._call(self.predictions.GetModelMetadata, request)
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(defs)
        return defs

    def status(self) -> list[dict]:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self._call(self.models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": state.Name(s.state), "error": s.status.error_message}
                for s in response.model_version_status]

    def close(self) -> None:
        self.channel.close()


class RestClient(ServingClient):
    """TF Serving's REST API over keep-alive HTTP/1.1 (columnar ``inputs`` form)."""

    def __init__(self, address: str, model_name: str = "model", version: int | None = None, timeout: float = 10.0):
        super().__init__(address, model_name, version, timeout)
        self._local = threading.local()  # one keep-alive connection per thread
        self.path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "")

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):  # the server may have closed an idle keep-alive connection
            connection = getattr(self._local, "connection", None)
            if connection is None:
                host, _, port = self.address.rpartition(":")
                connection = self._local.connection = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        try:
            result = json.loads(payload)
        except ValueError:
            raise ServingError.from_http(response.status, payload[:200].decode(errors="replace")) from None
        if response.status != 200:
            raise ServingError.from_http(response.status, result.get("error", str(result)))
        return result

    def predict(self, inputs: dict, signature_name: str = SERVING_DEFAULT) -> dict:
        body = {"signature_name": signature_name, "inputs": {k: to_json(as_array(v)) for k, v in inputs.items()}}
        outputs = self._request("POST", f"{self.path}:predict", body)["outputs"]
        dtypes = self.signature(signature_name)[1]
        if not isinstance(outputs, dict):  # a single output comes back bare
            outputs = {next(iter(dtypes)): outputs}
        return {k: np.asarray(v, dtype=dtypes[k].as_numpy_dtype if k in dtypes and dtypes[k] != tf.string else None)
                for k, v in outputs.items()}

    def signature_defs(self) -> get_model_metadata_pb2.SignatureDefMap:
        metadata = self._request("GET", f"{self.path}/metadata")["metadata"]["signature_def"]
        return json_format.ParseDict(metadata, get_model_metadata_pb2.SignatureDefMap(), ignore_unknown_fields=True)

    def status(self) -> list[dict]:
        statuses = self._request("GET", self.path)["model_version_status"]
        return [{"version": int(s["version"]), "state": s["state"],
                 "error": s.get("status", {}).get("error_message", "")} for s in statuses]

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()


def connect(target: str, model_name: str = "model", version: int | None = None,
            timeout: float = 10.0) -> ServingClient:
    """A client for ``grpc://HOST:PORT`` or ``http://HOST:PORT`` (any TF Serving endpoint)."""
    parts = urlsplit(target)
    if parts.scheme not in ("grpc", "http") or not parts.hostname or not parts.port:
        raise InputError(f"target {target!r}: expected grpc://HOST:PORT or http://HOST:PORT")
    cls = GrpcClient if parts.scheme == "grpc" else RestClient
    return cls(parts.netloc, model_name, version, timeout)
