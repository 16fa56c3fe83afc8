"""REST face of the test server (TF Serving's ``/v1/models`` API) on the standard library's
``ThreadingHTTPServer``.

    GET  /v1/models/NAME[/versions/V]             model status
    GET  /v1/models/NAME[/versions/V]/metadata    signature defs
    POST /v1/models/NAME[/versions/V]:predict     {"instances": [...]} or {"inputs": {...}}

Errors are ``{"error": "..."}`` with TF Serving's HTTP status (400 INVALID_ARGUMENT, 404 NOT_FOUND).
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format

from rocket_ctr.serving.models import ModelManager
from rocket_ctr.serving.status import ServingError, invalid, not_found
from rocket_ctr.serving.tensors import from_json, to_json

MAX_BODY_BYTES = 16 << 20
_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<action>/metadata|:predict|:classify|:regress)?$")


def _stack_instances(instances) -> dict:
    """Row form -> {alias: list of per-row values} (every instance must name the same inputs)."""
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty list")
    if not all(isinstance(row, dict) for row in instances):
        raise invalid("every entry of 'instances' must be an object of named inputs (this model has several)")
    keys = set(instances[0])
    for i, row in enumerate(instances):
        if set(row) != keys:
            raise invalid(f"instance {i} names inputs {sorted(row)} but instance 0 names {sorted(keys)}")
    return {k: [row[k] for row in instances] for k in instances[0]}


def predict_body(manager: ModelManager, name: str, version: int | None, body: bytes) -> dict:
    """Runs one ``:predict`` request body; returns the response object."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid(f"JSON Parse error: {err}") from None
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply") from None
    if not isinstance(request, dict):
        raise invalid("the request body must be a JSON object with 'instances' or 'inputs'")
    if ("instances" in request) == ("inputs" in request):
        raise invalid("the request needs exactly one of 'instances' (row form) or 'inputs' (columnar form)")
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise invalid("'signature_name' must be a string")
    rows = "instances" in request
    inputs = _stack_instances(request["instances"]) if rows else request["inputs"]
    if not isinstance(inputs, dict):
        raise invalid("'inputs' must be an object of named inputs (this model has several)")
    model = manager.get(name, version)
    _, outputs = model.predict(inputs, from_json, signature, (), manager.max_candidates)
    if rows:
        if len(outputs) == 1:
            return {"predictions": to_json(next(iter(outputs.values())))}
        columns = {k: to_json(v) for k, v in outputs.items()}
        return {"predictions": [dict(zip(columns, values)) for values in zip(*columns.values())]}
    if len(outputs) == 1:
        return {"outputs": to_json(next(iter(outputs.values())))}
    return {"outputs": {k: to_json(v) for k, v in outputs.items()}}


def status_body(manager: ModelManager, name: str, version: int | None) -> dict:
    return {"model_version_status": [
        {"version": str(v), "state": state,
         "status": {"error_code": "UNKNOWN" if error else "OK", "error_message": error}}
        for v, state, error in manager.status(name, version)]}


def metadata_body(manager: ModelManager, name: str, version: int | None) -> dict:
    model = manager.get(name, version)
    return {"model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": json_format.MessageToDict(model.signature_defs,
                                                                    preserving_proto_field_name=True)}}


class RestHandler(BaseHTTPRequestHandler):
    """Routes ``/v1/models/...``; the manager is ``self.server.manager``."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    server_version = "rocket-ctr-test-server"
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True  # else a small response waits ~40 ms for the client's delayed ACK

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        body = b""
        try:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                raise invalid("Content-Length header must be a non-negative integer")
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                raise invalid(f"request body of {length} bytes exceeds {MAX_BODY_BYTES} bytes")
            body = self.rfile.read(length) if length > 0 else b""
            self._reply(200, self._route(method, body))
        except ServingError as err:
            self._reply(err.http_status, {"error": err.message})
        except Exception as err:  # noqa: BLE001 - a request must never kill the server
            self._reply(500, {"error": f"{type(err).__name__}: {err}"})

    def _route(self, method: str, body: bytes) -> dict:
        path = self.path.split("?", 1)[0]
        match = _ROUTE.match(path)
        if not match:
            raise not_found(f"Malformed request: {method} {path}")
        name, action = match["name"], match["action"]
        version = int(match["version"]) if match["version"] else None
        if match["label"]:
            raise not_found(f"Unrecognized servable version label: {match['label']}")
        manager = self.server.manager
        if method == "GET" and action is None:
            return status_body(manager, name, version)
        if method == "GET" and action == "/metadata":
            return metadata_body(manager, name, version)
        if method == "POST" and action == ":predict":
            return predict_body(manager, name, version, body)
        if method == "POST" and action in (":classify", ":regress"):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{action[1:]} is not implemented here")
        raise not_found(f"Malformed request: {method} {path}")

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def start_rest(manager: ModelManager, host: str, port: int) -> tuple[ThreadingHTTPServer, int]:
    """Starts the REST server in a daemon thread; returns it and the bound port."""
    httpd = ThreadingHTTPServer((host, port), RestHandler)
    httpd.daemon_threads = True
    httpd.manager = manager
    threading.Thread(target=httpd.serve_forever, name="rest-api", daemon=True).start()
    return httpd, httpd.server_address[1]
