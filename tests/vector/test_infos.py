"""batch_infos: Gymnasium-style arrays with `_key` masks, dtypes chosen from all sub-envs."""

from __future__ import annotations

import numpy as np

from rock_env.vector.infos import batch_infos


def test_scalar_keys_get_typed_arrays_and_masks() -> None:
    out = batch_infos([{"ok": True, "n": 2, "x": 0.5}, None, {"ok": False, "n": 7}])
    assert out["ok"].dtype == np.bool_ and out["ok"].tolist() == [True, False, False]
    assert out["_ok"].tolist() == [True, False, True]
    assert out["n"].dtype == np.int64 and out["n"].tolist() == [2, 0, 7]
    assert out["x"].dtype == np.float64 and out["x"].tolist() == [0.5, 0.0, 0.0]
    assert out["_x"].tolist() == [True, False, False]


def test_int_and_float_mix_to_float_regardless_of_order() -> None:
    first_int = batch_infos([{"v": 1}, {"v": 2.5}])
    first_float = batch_infos([{"v": 2.5}, {"v": 1}])
    assert first_int["v"].dtype == np.float64 and first_int["v"].tolist() == [1.0, 2.5]
    assert first_float["v"].tolist() == [2.5, 1.0]


def test_numpy_scalars_keep_their_dtype() -> None:
    out = batch_infos([{"v": np.float32(1.5)}, {"v": np.float32(2.0)}])
    assert out["v"].dtype == np.float32


def test_strings_and_mixed_types_become_object_arrays() -> None:
    out = batch_infos([{"s": "a", "m": 1}, {"s": "b", "m": "one"}, {}])
    assert out["s"].dtype == object and out["s"].tolist() == ["a", "b", None]
    assert out["m"].tolist() == [1, "one", None]
    assert out["_m"].tolist() == [True, True, False]


def test_arrays_of_one_shape_are_stacked() -> None:
    out = batch_infos([{"a": np.arange(3)}, None, {"a": np.ones(3, dtype=np.int64)}])
    assert out["a"].shape == (3, 3)
    assert out["a"][2].tolist() == [1, 1, 1] and out["a"][1].tolist() == [0, 0, 0]
    ragged = batch_infos([{"a": np.arange(3)}, {"a": np.arange(2)}])
    assert ragged["a"].dtype == object


def test_nested_dicts_are_batched_recursively() -> None:
    out = batch_infos([{"final_info": {"r": 1.0, "s": "x"}}, None, {"final_info": {"r": 2.0}}])
    assert out["_final_info"].tolist() == [True, False, True]
    nested = out["final_info"]
    assert nested["r"].tolist() == [1.0, 0.0, 2.0]
    assert nested["_s"].tolist() == [True, False, False]


def test_final_obs_is_always_an_object_array() -> None:
    out = batch_infos([None, {"final_obs": "done"}], 2)
    assert out["final_obs"].dtype == object and out["final_obs"].tolist() == [None, "done"]
    assert out["_final_obs"].tolist() == [False, True]


def test_empty_infos_give_an_empty_dict() -> None:
    assert batch_infos([{}, None, {}]) == {}
