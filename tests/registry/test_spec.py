"""EnvSpec: validation, id parts, JSON round trip, entry points."""

from __future__ import annotations

import pytest

from rock_env.errors import EntryPointError, InvalidArgument
from rock_env.registry.spec import EnvSpec
from tests.envs_for_tests import GuessEnv


def test_spec_parts_and_json_round_trip() -> None:
    spec = EnvSpec(
        id="test:Guess-v1-small",
        entry_point="tests.envs_for_tests:GuessEnv",
        kwargs={"high": 3, "pair": (1, 2)},
        max_episode_steps=9,
        requirements=("sandbox",),
        description="guess",
        source="user",
    )
    assert (spec.namespace, spec.name, spec.version, spec.variant) == ("test", "Guess", 1, "small")
    assert spec.needs_sandbox
    again = EnvSpec.from_json(spec.to_json())
    assert again == spec
    assert again.kwargs["pair"] == (1, 2)


def test_callable_entry_point_serialises_as_import_path() -> None:
    spec = EnvSpec(id="test:Guess-v0", entry_point=GuessEnv)
    assert spec.to_dict()["entry_point"] == "tests.envs_for_tests:GuessEnv"
    assert EnvSpec.from_json(spec.to_json()).load_entry_point() is GuessEnv


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"entry_point": "no_colon"}, "package.module:ClassName"),
        ({"entry_point": 3}, "must be 'module:attr' or a callable"),
        ({"entry_point": "m:a", "kwargs": []}, "kwargs .* must be a dict"),
        ({"entry_point": "m:a", "max_episode_steps": 0}, "positive int"),
        ({"entry_point": "m:a", "source": "elsewhere"}, "source must be one of"),
    ],
)
def test_invalid_spec_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        EnvSpec(id="test:X-v0", **fields)  # type: ignore[arg-type]


def test_from_json_rejects_unknown_fields_and_bad_json() -> None:
    with pytest.raises(InvalidArgument, match="unknown EnvSpec fields"):
        EnvSpec.from_dict({"id": "a:B-v0", "entry_point": "m:a", "colour": 1})
    with pytest.raises(InvalidArgument, match="malformed"):
        EnvSpec.from_json("{not json")


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("no_such_module_xyz:Env", "cannot import module"),
        ("tests.envs_for_tests:Missing", "has no attribute"),
    ],
)
def test_broken_entry_points(entry_point: str, message: str) -> None:
    with pytest.raises(EntryPointError, match=message):
        EnvSpec(id="test:X-v0", entry_point=entry_point).load_entry_point()
