"""Values on the wire: plain JSON (:func:`jsonable`) and JSON that keeps numpy arrays (:func:`pack_tree`)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from rock_env.errors import InvalidArgument


def require_json(value: Any, what: str) -> None:
    """Raise InvalidArgument if ``value`` cannot travel as JSON (e.g. a callable in env kwargs)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"{what} must be JSON-serialisable to reach a remote server ({exc}); pass plain values "
            "(str, int, float, bool, None, lists, dicts) or use the local backend."
        ) from None


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars and arrays, tuples, sets, bytes, NaN)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value)


_NDARRAY = "__ndarray__"


def pack_tree(value: Any) -> Any:
    """Like :func:`jsonable`, but numpy arrays keep dtype and shape (``{"__ndarray__": [...], ...}``)."""
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        if value.dtype == object:
            items = [pack_tree(v) for v in flat]
            return {_NDARRAY: items, "dtype": "object", "shape": list(value.shape)}
        return {_NDARRAY: jsonable(flat.tolist()), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(k): pack_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack_tree(v) for v in value]
    return jsonable(value)


def unpack_tree(value: Any) -> Any:
    """The inverse of :func:`pack_tree`."""
    if isinstance(value, dict):
        if _NDARRAY in value and "dtype" in value:
            shape = tuple(value.get("shape") or (len(value[_NDARRAY]),))
            if value["dtype"] == "object":
                array = np.empty(len(value[_NDARRAY]), dtype=object)
                for i, item in enumerate(value[_NDARRAY]):
                    array[i] = unpack_tree(item)
                return array.reshape(shape)
            data = [np.nan if v is None else v for v in value[_NDARRAY]]
            return np.asarray(data, dtype=np.dtype(value["dtype"])).reshape(shape)
        return {k: unpack_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack_tree(v) for v in value]
    return value


__all__ = [
    "jsonable",
    "pack_tree",
    "require_json",
    "unpack_tree",
]
