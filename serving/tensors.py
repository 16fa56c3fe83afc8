"""Tensor encodings of the TF Serving API: numpy <-> ``TensorProto`` (gRPC) and <-> JSON (REST).

Decoders check a value against the dtype the signature expects and raise INVALID_ARGUMENT
naming the input, as TF Serving does.
"""
from __future__ import annotations

import base64

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

from rocket_ctr.serving.status import invalid


# ----- gRPC ---------------------------------------------------------------------------------------
def to_proto(array) -> tensor_pb2.TensorProto:
    """numpy (or nested lists) -> TensorProto; str/bytes arrays become DT_STRING."""
    array = as_array(array)
    proto = tensor_pb2.TensorProto(tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape]))
    if array.dtype == object:
        proto.dtype = tf.string.as_datatype_enum
        proto.string_val.extend(array.reshape(-1).tolist())
    else:
        proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
        proto.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


MAX_RANK = 8  # request tensors here have rank <= 2; deeper nesting is refused before decoding
MAX_ELEMENTS = 1 << 24  # values per request tensor (e.g. 1000 candidates x a long history, with room)


def from_proto(name: str, proto: tensor_pb2.TensorProto, dtype: tf.DType | None = None) -> np.ndarray:
    """TensorProto -> numpy, checking the dtype when ``dtype`` is given."""
    if dtype is not None and proto.dtype != dtype.as_datatype_enum:
        got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "an unset dtype"
        raise invalid(f"input '{name}': expects {dtype.name} but got {got}")
    dims = [d.size for d in proto.tensor_shape.dim]
    # checked before decoding: make_ndarray allocates the declared shape, whatever the payload
    if len(dims) > MAX_RANK or any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > MAX_ELEMENTS:
        raise invalid(f"input '{name}': shape {dims} is not a valid request tensor "
                      f"(rank <= {MAX_RANK}, sizes >= 0, at most {MAX_ELEMENTS:,} values)")
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as err:
        raise invalid(f"input '{name}': malformed TensorProto ({err})") from None


def as_array(value) -> np.ndarray:
    """numpy view of ``value``; text (str) becomes an object array of UTF-8 bytes."""
    array = np.asarray(value)
    if array.dtype.kind == "U":
        array = np.vectorize(lambda s: s.encode(), otypes=[object])(array) if array.size else array.astype(object)
    elif array.dtype.kind == "S":
        array = array.astype(object)
    return array


# ----- REST (JSON) -----------------------------------------------------------------------------------
def _shape(name: str, value) -> list:
    shape, node = [], value
    while isinstance(node, list):
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return shape


def _leaves(name: str, value, shape: list, depth: int, out: list) -> None:
    if depth == len(shape):
        if isinstance(value, list):
            raise invalid(f"input '{name}': nested lists of different depths")
        out.append(value)
        return
    if not isinstance(value, list) or len(value) != shape[depth]:
        raise invalid(f"input '{name}': ragged nested list (every row needs {shape[depth]} entries)")
    for item in value:
        _leaves(name, item, shape, depth + 1, out)


def _leaf(name: str, value, dtype: tf.DType):
    if dtype == tf.string:
        if isinstance(value, str):
            try:
                return value.encode()
            except UnicodeEncodeError:
                raise invalid(f"input '{name}': string is not valid UTF-8 (unpaired surrogate)") from None
        if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise invalid(f"input '{name}': invalid base64 in {{\"b64\": ...}}") from None
    elif dtype.is_integer:
        if type(value) is int:
            info = np.iinfo(dtype.as_numpy_dtype)
            if not info.min <= value <= info.max:
                raise invalid(f"input '{name}': {value} is out of range for {dtype.name}")
            return value
    elif dtype.is_floating:
        if type(value) in (int, float):
            return value
    elif dtype == tf.bool and type(value) is bool:
        return value
    raise invalid(f"input '{name}': expects {dtype.name} values but got {type(value).__name__} "
                  f"{json_repr(value)}")


def json_repr(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def from_json(name: str, value, dtype: tf.DType) -> np.ndarray:
    """A JSON value (scalar or nested lists; strings as text or ``{"b64": ...}``) -> numpy."""
    shape, flat = _shape(name, value), []
    if len(shape) > MAX_RANK:
        raise invalid(f"input '{name}': nested {len(shape)} levels deep; request tensors have rank <= {MAX_RANK}")
    _leaves(name, value, shape, 0, flat)
    values = [_leaf(name, v, dtype) for v in flat]
    if dtype == tf.string:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    return np.array(values, dtype=dtype.as_numpy_dtype).reshape(shape)


def to_json(array: np.ndarray):
    """numpy -> JSON-ready nested lists (bytes as text, or ``{"b64": ...}`` when not UTF-8)."""
    if array.dtype == object:
        def text(b):
            try:
                return b.decode()
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(b).decode()}
        return np.vectorize(text, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()
