"""Batching of per-env info dicts, Gymnasium style.

The info of a vector step is one dict. For every key that any sub-env reported, ``info[key]``
is an array with one entry per sub-env and ``info["_" + key]`` a boolean mask saying which
sub-envs reported it. Arrays are typed when the values allow it:

* all ``bool`` -> ``bool`` array; all ints -> ``int64``; ints and floats -> ``float64``
  (numpy scalars keep their dtype); missing entries are ``0``/``False``;
* numpy arrays of one shape -> stacked (shape ``(num_envs, *shape)``), missing entries zero;
* dict values -> batched recursively (a nested dict of arrays and masks);
* anything else (strings, lists, ``None``, mixed types) -> an ``object`` array, missing entries ``None``.

``info["final_obs"]`` is always an ``object`` array (it holds observations, i.e. strings).
Unlike Gymnasium, the dtype is chosen from all sub-envs' values at once, so the result does
not depend on which sub-env happened to report first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["batch_infos"]

_SCALARS = (bool, int, float, np.bool_, np.number)


def _batch_values(values: list[Any], indices: list[int], num_envs: int, force_object: bool) -> np.ndarray:
    if not force_object and all(isinstance(v, _SCALARS) for v in values):
        if all(isinstance(v, (bool, np.bool_)) for v in values):
            dtype: Any = np.bool_
        else:
            dtype = np.result_type(*[np.asarray(v).dtype if isinstance(v, np.generic) else type(v) for v in values])
        array = np.zeros(num_envs, dtype=dtype)
        array[indices] = values
        return array
    if (
        not force_object
        and all(isinstance(v, np.ndarray) for v in values)
        and len({v.shape for v in values}) == 1
        and all(v.dtype != object for v in values)
    ):
        dtype = np.result_type(*values)
        array = np.zeros((num_envs, *values[0].shape), dtype=dtype)
        array[indices] = np.stack(values)
        return array
    array = np.full(num_envs, None, dtype=object)
    for index, value in zip(indices, values, strict=True):
        array[index] = value
    return array


def batch_infos(infos: Sequence[dict[str, Any] | None], num_envs: int | None = None) -> dict[str, Any]:
    """Batch ``infos`` (entry ``i`` is sub-env ``i``'s info, ``None`` if it reported none).

    Returns one dict of arrays plus ``_key`` masks (see the module docstring).
    """
    n = len(infos) if num_envs is None else num_envs
    keys: dict[str, None] = {}
    for info in infos:
        if info:
            keys.update(dict.fromkeys(info))
    out: dict[str, Any] = {}
    for key in keys:
        indices = [i for i, info in enumerate(infos) if info and key in info]
        values = [infos[i][key] for i in indices]  # type: ignore[index]
        mask = np.zeros(n, dtype=np.bool_)
        mask[indices] = True
        if key != "final_obs" and all(isinstance(v, dict) for v in values):
            nested: list[dict[str, Any] | None] = [None] * n
            for index, value in zip(indices, values, strict=True):
                nested[index] = value
            out[key] = batch_infos(nested, n)
        else:
            out[key] = _batch_values(values, indices, n, force_object=key == "final_obs")
        out[f"_{key}"] = mask
    return out
