"""The id grammar."""

from __future__ import annotations

import pytest

from rock_env.errors import InvalidEnvId
from rock_env.registry.ids import ParsedId, format_id, parse_id


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("game:Sokoban-v0-easy", ParsedId("game", "Sokoban", 0, "easy")),
        ("game:Game2048-v0-extreme-hard", ParsedId("game", "Game2048", 0, "extreme-hard")),
        ("code:Python-v0", ParsedId("code", "Python", 0, None)),
        ("math:GSM8K", ParsedId("math", "GSM8K", None, None)),
        ("rg:game_of_life_halting", ParsedId("rg", "game_of_life_halting", None, None)),
        ("logic:RuleTaker-d0", ParsedId("logic", "RuleTaker-d0", None, None)),
        ("MyEnv-v12", ParsedId(None, "MyEnv", 12, None)),
        ("plain", ParsedId(None, "plain", None, None)),
    ],
)
def test_parse_id(env_id: str, expected: ParsedId) -> None:
    assert parse_id(env_id) == expected
    assert str(expected) == env_id


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "must be a string"),
        (42, "must be a string"),
        (b"game:Sokoban-v0-easy", "must be a string"),
        ("a:b:c", "more than one ':'"),
        (" game:Sokoban-v0-easy", "whitespace"),
        ("rock_env/Sokoban-easy-v0", "Gymnasium alias"),
        ("game:", "malformed"),
        (":Sokoban", "malformed"),
        ("x" * 300, "at most"),
    ],
)
def test_malformed_ids_say_what_is_wrong(bad: object, message: str) -> None:
    with pytest.raises(InvalidEnvId, match=message):
        parse_id(bad)


def test_format_id_needs_version_for_variant() -> None:
    with pytest.raises(InvalidEnvId, match="needs a version"):
        format_id("game", "Sokoban", None, "easy")
