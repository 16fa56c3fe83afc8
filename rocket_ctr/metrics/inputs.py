"""Checks and coerces metric inputs: labels, scores, probabilities, user ids and row weights.

Each function takes anything ``np.asarray`` accepts (a trailing size-1 axis is flattened, as
Keras outputs are shaped (batch, 1)) and raises ``ValueError`` naming the offending argument.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def as_1d(x: Any, name: str) -> np.ndarray:
    """np.asarray, flattening a trailing size-1 axis (Keras outputs are shaped (batch, 1))."""
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or shaped (n, 1)), got shape {arr.shape}")
    return arr


def check_len(arr: np.ndarray, name: str, n: int, ref: str) -> None:
    """Raises ValueError unless ``arr`` has ``n`` rows (the length of ``ref``)."""
    if len(arr) != n:
        raise ValueError(f"{name} has length {len(arr)} but {ref} has length {n}")


def labels(x: Any, name: str = "labels") -> np.ndarray:
    """Validated labels as an int8 array of 0/1."""
    arr = as_1d(x, name)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric or bool 0/1 values, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)][0]
        raise ValueError(f"{name} must contain only 0 and 1, found {bad!r}")
    return arr.astype(np.int8)


def scores(x: Any, name: str = "scores") -> np.ndarray:
    """Validated finite float scores (float dtypes kept as is: casting could merge or split ties)."""
    arr = as_1d(x, name)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, found {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    return arr


def probs(x: Any, name: str = "probs") -> np.ndarray:
    """Validated scores that are probabilities in [0, 1]."""
    arr = scores(x, name)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1], found range [{arr.min()}, {arr.max()}]")
    return arr


def unbox_object_ids(arr: np.ndarray, name: str) -> np.ndarray:
    """Object arrays of bytes/str (what tf string tensors give) -> fixed-width bytes/str arrays.

    Those sort in C instead of via Python comparisons. Ids are expected to be of one type.
    """
    if arr.dtype.kind != "O" or not arr.size:
        return arr
    first = arr[0]
    try:
        if isinstance(first, bytes):
            return arr.astype(np.bytes_)
        if isinstance(first, str):
            return arr.astype(np.str_)
    except (UnicodeError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: object ids must all be bytes or all str ({e})") from None
    return arr


def user_ids(x: Any, name: str = "user_ids") -> np.ndarray:
    """User ids as a sortable numeric array (strings/bytes/objects factorised to int codes)."""
    arr = as_1d(x, name)
    kind = arr.dtype.kind
    if kind in "iub":
        return arr
    if kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must not contain NaN/inf")
        return arr
    arr = unbox_object_ids(arr, name)
    if arr.dtype.kind in "USO":
        try:
            _, codes = np.unique(arr, return_inverse=True)
        except TypeError as e:
            raise ValueError(f"{name}: ids are not mutually comparable ({e})") from None
        return codes.reshape(-1)
    raise ValueError(f"{name} must be integers, strings or bytes, got dtype {arr.dtype}")


def id_family(arr: np.ndarray) -> str | None:
    """'number', 'str', 'bytes' or 'object': batches that may be concatenated together."""
    kind = arr.dtype.kind
    return {"i": "number", "u": "number", "b": "number", "f": "number",
            "U": "str", "S": "bytes", "O": "object"}.get(kind)


def weights(x: Any, n: int, name: str = "weights") -> np.ndarray | None:
    """Validated per-row weights (finite, >= 0) as float64, or None for unweighted rows."""
    if x is None:
        return None
    arr = as_1d(x, name)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    check_len(arr, name, n, "labels")
    arr = arr.astype(np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0):
        raise ValueError(f"{name} must be finite and >= 0, found {arr[~(np.isfinite(arr) & (arr >= 0))][0]!r}")
    return arr
