"""gRPC face of the test server: ``PredictionService`` (Predict, GetModelMetadata) and
``ModelService`` (GetModelStatus), on the official ``tensorflow-serving-api`` stubs."""
from __future__ import annotations

from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from rocket_ctr.serving.models import ModelManager
from rocket_ctr.serving.status import ServingError, invalid
from rocket_ctr.serving.tensors import from_proto, to_proto

STATE = get_model_status_pb2.ModelVersionStatus.State


def _version(model_spec) -> int | None:
    if model_spec.version_label:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Unrecognized servable version label: {model_spec.version_label}")
    return model_spec.version.value if model_spec.HasField("version") else None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify/Regress/MultiInference stay UNIMPLEMENTED."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def Predict(self, request, context):
        try:
            model = self.manager.get(request.model_spec.name, _version(request.model_spec))
            signature, outputs = model.predict(request.inputs, from_proto, request.model_spec.signature_name,
                                               request.output_filter, self.manager.max_candidates)
        except ServingError as err:
            context.abort(err.code, err.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.signature_name = model.name, signature
        response.model_spec.version.value = model.version
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(to_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        try:
            model = self.manager.get(request.model_spec.name, _version(request.model_spec))
            fields = list(request.metadata_field)
            if not fields:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            unsupported = [f for f in fields if f != "signature_def"]
            if unsupported:
                raise invalid(f"Metadata field {unsupported[0]} is not supported")
        except ServingError as err:
            context.abort(err.code, err.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].Pack(model.signature_defs)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus; HandleReloadConfigRequest stays UNIMPLEMENTED."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request, context):
        try:
            statuses = self.manager.status(request.model_spec.name, _version(request.model_spec))
        except ServingError as err:
            context.abort(err.code, err.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state, error in statuses:
            entry = response.model_version_status.add(version=version, state=STATE.Value(state))
            if error:
                entry.status.CopyFrom(status_pb2.StatusProto(error_code=2, error_message=error))  # UNKNOWN
        return response


def start_grpc(manager: ModelManager, host: str, port: int, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """Starts the gRPC server; returns it and the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
