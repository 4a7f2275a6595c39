"""The hub registry source on its own: id grammar, where ids resolve, the specs a client gets.

The end-to-end paths (a real admin, make / make_vec / Hydra / rollout) are in
tests/server/test_hub_clients.py and tests/server/test_hub_plugin.py.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from rock_env.errors import HubSpecInvalid, HubSpecNotFound, InvalidEnvId, InvalidEnvKwargs, ServerUnavailable
from rock_env.protocol.hub import HubResolved, HubSpec, HubVersion
from rock_env.registry import hub_source
from rock_env.registry.factory import make_from_spec
from rock_env.registry.resolver import Registry
from rock_env.registry.spec import EnvSpec


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ROCK_ENV_URL", raising=False)
    monkeypatch.delenv("ROCK_ENV_TOKEN", raising=False)
    hub_source.clear_cache()
    yield
    hub_source.clear_cache()


def version(local: bool = False, resolved: bool = True) -> HubVersion:
    spec = HubSpec(name="tiny", version=3, env="game:Sokoban-v0-easy", kwargs={"num_boxes": 1}, local=local)
    return HubVersion(
        id=spec.env_id,
        name="tiny",
        version=3,
        spec=spec,
        digest="sha256:0",
        pushed_at=0.0,
        pushed_by="anonymous",
        resolved=HubResolved(
            entry_point="rock_env.games.sokoban.env:SokobanEnv",
            kwargs={"dim_room": [6, 6], "num_boxes": 1, "max_turns": 20},
            source="builtin",
            base_env="game:Sokoban-v0-easy",
        )
        if resolved
        else None,
        problem=None if resolved else "DependencyMissing: needs foo",
    )


@pytest.mark.parametrize(("env_id", "expected"), [("hub:tiny-v3", ("tiny", 3)), ("hub:my-env.2-v10", ("my-env.2", 10))])
def test_split_hub_id(env_id: str, expected: tuple[str, int]) -> None:
    assert hub_source.split_hub_id(env_id) == expected


@pytest.mark.parametrize(
    ("env_id", "words"),
    [("hub:tiny", "must name one version"), ("hub:tiny-v1-easy", "no variant"), ("game:Sokoban-v0", "not a hub id")],
)
def test_split_hub_id_refuses_other_forms(env_id: str, words: str) -> None:
    with pytest.raises(InvalidEnvId, match=words):
        hub_source.split_hub_id(env_id)


def test_without_a_server_the_error_says_how_to_configure_one() -> None:
    with pytest.raises(HubSpecNotFound, match=r"set \$ROCK_ENV_URL"):
        hub_source.resolve("hub:tiny-v3")


def test_an_unreachable_server_is_server_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ROCK_ENV_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ServerUnavailable, match=r"env hub at http://127\.0\.0\.1"):
        hub_source.resolve("hub:tiny-v3")


def test_a_registry_source_owns_its_namespace_without_loading_gem() -> None:
    seen: list[str] = []

    def source(env_id: str) -> EnvSpec:
        seen.append(env_id)
        return EnvSpec(id=env_id, entry_point="rock_env.games.sokoban.env:SokobanEnv")

    registry = Registry(None, plugin_group="rock_env.no_such_group")
    registry.add_source("hub", source)
    assert registry.spec("hub:tiny-v3").id == "hub:tiny-v3"
    assert seen == ["hub:tiny-v3"]
    assert registry._gem_loaded is False  # a hub id never pays for GEM's registry
    without_gem = Registry(None, plugin_group="rock_env.no_such_group", include_gem=False)
    without_gem.add_source("hub", source)
    assert without_gem.list(namespace="hub") == []  # sources are looked up, not listed


def test_a_local_spec_is_built_in_this_process() -> None:
    spec = hub_source.client_spec(version(local=True), "http://127.0.0.1:1")
    assert spec.entry_point == "rock_env.games.sokoban.env:SokobanEnv"
    assert spec.kwargs["num_boxes"] == 1 and spec.source == "builtin"
    env = make_from_spec(spec)
    assert type(env).__name__ == "SokobanEnv" and env.spec is spec
    env.close()


def test_a_server_spec_makes_a_remote_env_through_the_registered_factory() -> None:
    spec = hub_source.client_spec(version(), "http://127.0.0.1:9")
    entry = spec.entry_point
    assert isinstance(entry, hub_source.HubRemoteEntry)
    assert spec.to_dict()["entry_point"] == "rock_env.registry.hub_source:HubRemoteEntry"
    assert pickle.loads(pickle.dumps(spec)).entry_point.base_url == "http://127.0.0.1:9"  # async vector envs
    calls: list[tuple[Any, ...]] = []

    class Made:
        def close(self) -> None:
            pass

    def factory(env_id: str, *, base_url: str, **kwargs: Any) -> Made:
        calls.append((env_id, base_url, kwargs))
        return Made()

    saved = hub_source._remote_factory
    hub_source.set_remote_factory(factory)
    try:
        make_from_spec(spec, num_boxes=2)
    finally:
        hub_source.set_remote_factory(saved)
    assert calls == [("hub:tiny-v3", "http://127.0.0.1:9", {"num_boxes": 2})]


def test_a_server_spec_checks_the_envs_arguments_here_first() -> None:
    served = version()
    assert served.resolved is not None
    served.resolved.arguments = ["dim_room", "max_turns", "num_boxes", "seed"]
    spec = hub_source.client_spec(served, "http://127.0.0.1:9")
    with pytest.raises(InvalidEnvKwargs, match="'num_boxs' -> 'num_boxes'"):
        make_from_spec(spec, num_boxs=2)  # refused before any request


def test_a_version_the_server_cannot_build_says_why() -> None:
    with pytest.raises(HubSpecInvalid, match="needs foo"):
        hub_source.client_spec(version(resolved=False), "http://127.0.0.1:9")


def test_a_local_hub_answers_before_http() -> None:
    answers: dict[str, EnvSpec | None] = {}

    def lookup(name: str, number: int) -> EnvSpec | None:
        if name == "gone":
            raise HubSpecNotFound("no hub spec named 'gone'")
        return answers.get(name)

    hub_source.register_local_hub("test", lookup)
    try:
        answers["tiny"] = EnvSpec(id="hub:tiny-v3", entry_point="rock_env.games.sokoban.env:SokobanEnv")
        assert hub_source.resolve("hub:tiny-v3") is answers["tiny"]
        with pytest.raises(HubSpecNotFound, match="'gone'"):
            hub_source.resolve("hub:gone-v1")
        with pytest.raises(HubSpecNotFound, match="ROCK_ENV_URL"):  # a hub that is not serving: next source
            hub_source.resolve("hub:other-v1")
    finally:
        hub_source.unregister_local_hub("test")
