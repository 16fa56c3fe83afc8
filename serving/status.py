"""TF Serving's error model: a gRPC status code plus a message, and its HTTP (REST) mapping."""
from __future__ import annotations

import grpc

# the REST API's status for each gRPC code (TF Serving's mapping; anything else is 500)
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
GRPC_CODE = {status: code for code, status in HTTP_STATUS.items() if code != grpc.StatusCode.FAILED_PRECONDITION
             and code != grpc.StatusCode.OUT_OF_RANGE}


class ServingError(Exception):
    """A request that TF Serving would answer with a non-OK status.

    Args:
        code: a ``grpc.StatusCode`` (INVALID_ARGUMENT, NOT_FOUND, ...).
        message: the text returned to the client (names the offending input where there is one).
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code, self.message = code, message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @classmethod
    def from_http(cls, status: int, message: str) -> ServingError:
        return cls(GRPC_CODE.get(status, grpc.StatusCode.UNKNOWN), message)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
