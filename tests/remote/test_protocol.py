"""The wire models shared by server and clients: error round trip, JSON conversion, typed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from rock_env.errors import EnvNotFound, RockEnvError, WorkerLost
from rock_env.protocol import (
    EnvStepRequest,
    VecMakeRequest,
    error_body,
    exception_from_body,
    jsonable,
    pack_tree,
    unpack_tree,
)


def test_errors_round_trip_to_the_same_class() -> None:
    for exc in (EnvNotFound("no such env"), WorkerLost("gone")):
        back = exception_from_body(error_body(exc).model_dump())
        assert type(back) is type(exc) and str(back) == str(exc)
    assert type(exception_from_body({"error": "NotAClass", "message": "m"})) is RockEnvError


def test_jsonable_plain_types() -> None:
    value = {"a": np.int64(3), "b": np.array([1.5, 2.5]), "c": (1, "x"), "d": float("nan"), 5: b"bytes"}
    assert jsonable(value) == {"a": 3, "b": [1.5, 2.5], "c": [1, "x"], "d": None, "5": "bytes"}


def test_pack_tree_keeps_dtypes_and_shapes() -> None:
    infos = {
        "reward_parts": np.array([1, 2, 3], dtype=np.int64),
        "_reward_parts": np.array([True, False, True]),
        "final_obs": np.array(["a", None, "c"], dtype=object),
        "nested": {"x": np.zeros((2, 2), dtype=np.float32)},
        "text": "plain",
    }
    back = unpack_tree(pack_tree(infos))
    for key in ("reward_parts", "_reward_parts", "final_obs"):
        assert back[key].dtype == infos[key].dtype and list(back[key]) == list(infos[key])
    assert back["nested"]["x"].dtype == np.float32 and back["nested"]["x"].shape == (2, 2)
    assert back["text"] == "plain"


def test_wire_models_reject_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        EnvStepRequest.model_validate({"action": "x", "actoin": "y"})
    with pytest.raises(ValueError):
        VecMakeRequest.model_validate({"env_id": "game:Sokoban-v0", "num_envs": 0})


def test_control_models_stay_out_of_the_client_side() -> None:
    """Admin <-> worker models live in ``protocol.control``; no client-facing protocol module and
    no client module (``rock_env.remote``) imports it."""
    from tests.test_layers import all_imports

    control = "rock_env.protocol.control"
    client_side = ("rock_env.protocol.envs", "rock_env.protocol.vecs", "rock_env.protocol.sandboxes")
    users = sorted(
        str(i) for i in all_imports() if i.target == control and i.source.startswith(("rock_env.remote", *client_side))
    )
    assert users == []
    import rock_env.protocol as protocol

    worker_models = {name for name in protocol.__all__ if name.startswith("Worker")}
    assert worker_models and all(getattr(protocol, n).__module__ == control for n in worker_models)


def test_every_wire_model_is_exported_from_the_package() -> None:
    """``from rock_env.protocol import X`` keeps working for every model of every topic module."""
    import importlib

    from pydantic import BaseModel

    import rock_env.protocol as protocol

    for topic in ("common", "errors", "codec", "envs", "vecs", "sandboxes", "compat", "control"):
        module = importlib.import_module(f"rock_env.protocol.{topic}")
        for name, value in vars(module).items():
            public = not name.startswith("_")
            if (
                public
                and isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                assert getattr(protocol, name) is value, f"rock_env.protocol does not export {topic}.{name}"
                assert name in protocol.__all__
