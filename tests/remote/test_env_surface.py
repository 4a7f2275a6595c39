"""What trainers and policies read from a RemoteEnv besides reset/step: the same as from a local env.

``sample_random_action`` (drawn on the server from the env's own RNG), ``tools``, ``spec``,
``unwrapped``, the text spaces, ``render``, ``with``; and the vector twins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.core import Env
from rock_env.errors import EnvClosed, InvalidArgument
from rock_env.remote import RemoteEnv, RemoteVecEnv
from rock_env.server.runner import BackgroundServer
from tests.rollout.helpers import LINE_ID, LineEnv, register_line_env

pytestmark = pytest.mark.server

SOKOBAN = "game:Sokoban-v0-easy"
SPACE_LINE_ID = "test:SpaceSampledLine-v0"


class SpaceSampledLineEnv(LineEnv):
    """LineEnv whose random actions come from its action space (the base class's default)."""

    sample_random_action = Env.sample_random_action


@pytest.fixture(scope="module", autouse=True)
def test_envs() -> Iterator[None]:
    register_line_env()  # the admin's embedded worker builds envs in this process
    rock.register(SPACE_LINE_ID, f"{__name__}:SpaceSampledLineEnv", override=True)
    yield


def test_sample_random_action_uses_the_hosted_envs_rng(server: BackgroundServer) -> None:
    with rock.make(SOKOBAN, backend="remote", base_url=server.url) as remote, rock.make(SOKOBAN) as local:
        # before any reset and across episodes, the draws follow the env's own RNG on both sides
        assert [remote.sample_random_action() for _ in range(3)] != [] and remote.spec == local.spec
        for seed in (0, 5):
            assert remote.reset(seed=seed) == local.reset(seed=seed)
            for _ in range(12):
                action = local.sample_random_action()
                assert remote.sample_random_action() == action
                got, want = remote.step(action), local.step(action)
                assert got == want
                if want[2] or want[3]:
                    break


def test_seeding_the_action_space_reaches_the_hosted_env(server: BackgroundServer) -> None:
    remote = rock.make(SPACE_LINE_ID, backend="remote", base_url=server.url)
    local = rock.make(SPACE_LINE_ID)
    try:
        assert remote.action_space == local.action_space  # same max_length and charset, in order
        remote.action_space.seed(42)
        local.action_space.seed(42)
        drawn = [local.sample_random_action() for _ in range(4)]
        assert [remote.sample_random_action() for _ in range(4)] == drawn
        assert len(set(drawn)) == 4  # really random text, not a constant
        remote.action_space.seed(7)  # the client's copy of the space is seeded as well
        local.action_space.seed(7)
        assert remote.action_space.sample() == local.action_space.sample()
    finally:
        remote.close()
        local.close()


def test_tools_spec_spaces_unwrapped_render(server: BackgroundServer) -> None:
    with rock.make(LINE_ID, backend="remote", base_url=server.url) as remote:
        local = rock.make(LINE_ID)
        assert isinstance(remote, RemoteEnv)
        assert remote.tools == local.tools and remote.tools[0]["function"]["name"] == "move"
        assert remote.spec is not None and remote.spec.id == LINE_ID == local.spec.id
        assert remote.unwrapped is remote
        assert remote.observation_space == local.observation_space
        assert remote.render() == local.render() is None
        assert remote.reset(seed=1) == local.reset(seed=1)
        step = local.step("\\boxed{left}")
        assert remote.step("\\boxed{left}") == step
        assert remote.render() == local.render() == step[0]
    assert remote._closed
    with pytest.raises(EnvClosed):
        remote.sample_random_action()
    gone = httpx.get(f"{server.url}/api/v1/envs/{remote.remote_id}/render", timeout=60)
    assert gone.status_code == 404 and gone.json()["error"] == "EnvInstanceNotFound"


def test_tool_call_hook_runs_on_the_hosted_env(server: BackgroundServer) -> None:
    with rock.make(LINE_ID, backend="remote", base_url=server.url) as remote:
        local = rock.make(LINE_ID)
        for name, arguments in [("move", {"direction": "left"}), ("move", "garbage"), ("jump", {})]:
            assert remote.tool_call_to_action(name, arguments) == local.tool_call_to_action(name, arguments)


def test_game_has_no_tools(server: BackgroundServer) -> None:
    with rock.make(SOKOBAN, backend="remote", base_url=server.url) as remote:
        assert remote.tools is None
        assert not hasattr(remote, "tool_call_to_action")  # like the local Sokoban env
        gone = httpx.post(
            f"{server.url}/api/v1/envs/{remote.remote_id}/tool_call_to_action", json={"name": "x"}, timeout=60
        )
        assert gone.status_code == 422 and "no tool_call_to_action" in gone.json()["message"]
        from rock_env.policies.openai_chat import tool_schemas

        assert tool_schemas(remote) == []


@pytest.mark.bwrap
def test_tool_env_tools_travel(server: BackgroundServer) -> None:
    remote = rock.make("tool:Bash-v0", backend="remote", base_url=server.url)
    local = rock.make("tool:Bash-v0")
    try:
        assert remote.tools == local.tools
        assert [t["function"]["name"] for t in remote.tools or []] == ["bash", "submit"]
    finally:
        remote.close()
        local.close()


def test_vector_sample_render_tools(server: BackgroundServer) -> None:
    remote = rock.make_vec(LINE_ID, 3, backend="remote", base_url=server.url, seed=4)
    local = rock.make_vec(LINE_ID, 3, seed=4)
    try:
        assert isinstance(remote, RemoteVecEnv)
        assert remote.tools == local.envs[0].tools  # type: ignore[attr-defined]
        assert remote.reset()[0] == local.reset()[0]
        for _ in range(6):
            actions = remote.sample_random_actions()
            assert tuple(actions) == local.call("sample_random_action")
            assert remote.step(actions)[0] == local.step(actions)[0]
        assert remote.render() == local.render()
        assert remote.call("render") == local.call("render")
        with pytest.raises(InvalidArgument, match="not available over HTTP"):
            remote.call("close")
    finally:
        remote.close()
        local.close()


def test_async_remote_vector_samples_too(server: BackgroundServer) -> None:
    kwargs: dict[str, Any] = {"mode": "async", "num_workers": 2}
    with rock.make_vec(SOKOBAN, 2, backend="remote", base_url=server.url, seed=3, **kwargs) as remote:
        local = rock.make_vec(SOKOBAN, 2, seed=3)
        try:
            remote.reset()
            local.reset()
            assert tuple(remote.sample_random_actions()) == local.call("sample_random_action")
        finally:
            local.close()
