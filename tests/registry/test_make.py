"""register / make / spec / list_envs on the default registry and on private registries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rock_env as rock
from rock_env.errors import (
    AlreadyRegistered,
    EnvNotFound,
    InvalidArgument,
    InvalidEnvId,
    InvalidEnvKwargs,
    NamespaceNotFound,
)
from rock_env.registry import Registry
from rock_env.registry.spec import EnvSpec
from tests.envs_for_tests import GuessEnv


@pytest.fixture
def guess_id() -> Iterator[str]:
    env_id = "test:Guess-v0-small"
    rock.register(env_id, "tests.envs_for_tests:GuessEnv", kwargs={"high": 3}, max_episode_steps=4, description="g")
    yield env_id
    rock.registry.unregister(env_id)


def test_register_make_and_spec(guess_id: str) -> None:
    env = rock.make(guess_id)
    assert isinstance(env, GuessEnv)
    assert env.high == 3
    assert env.spec is rock.spec(guess_id)
    assert env.max_episode_steps == 4
    assert rock.make(guess_id, high=50).high == 50


def test_register_with_callable_entry_point() -> None:
    rock.register("test:Callable-v0", GuessEnv, kwargs={"high": 2})
    try:
        assert rock.make("test:Callable-v0").high == 2
    finally:
        rock.registry.unregister("test:Callable-v0")


def test_registering_an_existing_id_needs_override(guess_id: str) -> None:
    with pytest.raises(AlreadyRegistered, match="override=True"):
        rock.register(guess_id, "tests.envs_for_tests:GuessEnv")
    rock.register(guess_id, "tests.envs_for_tests:GuessEnv", kwargs={"high": 7}, override=True)
    assert rock.make(guess_id).high == 7


def test_register_rejects_unknown_spec_fields() -> None:
    with pytest.raises(InvalidArgument, match="unknown spec fields"):
        rock.register("test:X-v0", "tests.envs_for_tests:GuessEnv", hgh=3)


def test_unknown_kwarg_names_the_accepted_ones(guess_id: str) -> None:
    with pytest.raises(InvalidEnvKwargs, match=r"does not accept 'hgh'.*high, max_turns, seed.*'high'"):
        rock.make(guess_id, hgh=5)


def test_gem_envs_reject_typos_instead_of_swallowing_them() -> None:
    with pytest.raises(InvalidEnvKwargs, match="accepted keyword arguments"):
        rock.make("game:Hangman-v0-easy", wrod_length=5)


@pytest.mark.parametrize("bad", ["", None, 42, 3.5, "a:b:c", "bad id"])
def test_bad_ids_are_typed_errors(bad: object) -> None:
    with pytest.raises(InvalidEnvId):
        rock.make(bad)  # type: ignore[arg-type]


def test_unknown_id_suggests_close_matches_across_sources(guess_id: str) -> None:
    with pytest.raises(EnvNotFound, match="'test:Guess-v0-small'"):
        rock.make("test:Gues-v0-small")
    with pytest.raises(EnvNotFound, match="game:Sudoku-v0-easy"):  # a GEM id
        rock.make("game:Sudokuu-v0-easy")


def test_unknown_namespace() -> None:
    with pytest.raises(NamespaceNotFound, match=r"known namespaces: .*game"):
        rock.make("nonamespace:Thing-v0")


def test_unknown_backend_and_stray_base_url(guess_id: str) -> None:
    with pytest.raises(InvalidArgument, match="backend must be one of"):
        rock.make(guess_id, backend="cloud")
    with pytest.raises(InvalidArgument, match="backend='remote'"):
        rock.make(guess_id, base_url="http://127.0.0.1:1")


def test_render_mode_is_checked(guess_id: str) -> None:
    assert rock.make(guess_id, render_mode="ansi").render_mode == "ansi"
    with pytest.raises(InvalidEnvKwargs, match="render_mode 'human'"):
        rock.make(guess_id, render_mode="human")


def test_list_envs_and_namespace_filter(guess_id: str) -> None:
    ids = [s.id for s in rock.list_envs()]
    assert guess_id in ids
    assert "game:Hangman-v0-easy" in ids
    assert len(ids) == len(set(ids))
    assert {s.namespace for s in rock.list_envs(namespace="test")} == {"test"}
    assert all(s.source == "gem" for s in rock.list_envs(source="gem"))


def test_pprint_registry(guess_id: str) -> None:
    text = rock.pprint_registry("test", print_output=False)
    assert text is not None and "===== test =====" in text and guess_id in text


def test_private_registry_is_isolated() -> None:
    reg = Registry(lambda: [EnvSpec(id="p:Only-v0", entry_point=GuessEnv, source="builtin")], include_gem=False)
    assert reg.spec("p:Only-v0").source == "builtin"
    with pytest.raises(EnvNotFound):
        reg.spec("game:Hangman-v0-easy")
    with pytest.raises(EnvNotFound):
        rock.spec("p:Only-v0")
