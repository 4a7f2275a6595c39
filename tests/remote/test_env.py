"""RemoteEnv and RemoteVecEnv: the same transcripts as the local envs, typed errors, clean closing."""

from __future__ import annotations

import socket

import httpx
import numpy as np
import pytest

import rock_env as rock
from rock_env.core import Env
from rock_env.errors import EnvInstanceNotFound, InvalidAction, InvalidEnvKwargs, ResetNeeded, ServerUnavailable
from rock_env.remote import RemoteEnv, RemoteVecEnv
from rock_env.server.runner import BackgroundServer

pytestmark = pytest.mark.server

SOKOBAN = "game:Sokoban-v0-easy"
MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}", "not a move"]


def transcript(env: object, seed: int, actions: list[str]) -> list[object]:
    out: list[object] = [env.reset(seed=seed)]  # type: ignore[attr-defined]
    for action in actions:
        step = env.step(action)  # type: ignore[attr-defined]
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("seed", [0, 7])
def test_remote_transcript_equals_local(server: BackgroundServer, seed: int) -> None:
    rng = np.random.default_rng(seed)
    actions = [MOVES[i] for i in rng.integers(0, len(MOVES), 40)]
    remote = rock.make(SOKOBAN, backend="remote", base_url=server.url)
    local = rock.make(SOKOBAN)
    try:
        assert isinstance(remote, RemoteEnv) and isinstance(remote, Env)
        assert transcript(remote, seed, actions) == transcript(local, seed, actions)
    finally:
        remote.close()
        local.close()


def test_constructor_seed_and_max_episode_steps_like_local(server: BackgroundServer) -> None:
    remote = rock.make(SOKOBAN, backend="remote", base_url=server.url, seed=11, max_episode_steps=3)
    local = rock.make(SOKOBAN, seed=11, max_episode_steps=3)
    try:
        assert remote.reset() == local.reset()
        steps = [(remote.step("\\boxed{up}"), local.step("\\boxed{up}")) for _ in range(3)]
        assert all(a == b for a, b in steps)
        assert steps[-1][0][3] is True  # truncated by max_episode_steps, on both sides
        with pytest.raises(ResetNeeded):
            remote.step("\\boxed{up}")
    finally:
        remote.close()
        local.close()


def test_errors_map_to_the_same_classes(server: BackgroundServer) -> None:
    with pytest.raises(InvalidEnvKwargs, match="accepted keyword arguments"):
        rock.make(SOKOBAN, backend="remote", base_url=server.url, no_such_kwarg=1)
    env = rock.make(SOKOBAN, backend="remote", base_url=server.url)
    with pytest.raises(ResetNeeded):
        env.step("\\boxed{up}")
    env.reset(seed=0)
    env.close()
    env.close()  # idempotent
    with pytest.raises(ResetNeeded):
        env.step("\\boxed{up}")


def test_env_closed_on_server_side(server: BackgroundServer) -> None:
    env = rock.make(SOKOBAN, backend="remote", base_url=server.url)
    env.reset(seed=0)
    httpx.delete(f"{server.url}/api/v1/envs/{env.remote_id}", timeout=60)
    with pytest.raises(EnvInstanceNotFound):
        env.step("\\boxed{up}")
    env.close()


def test_unreachable_server_is_server_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnavailable, match="cannot reach"):
        rock.make(SOKOBAN, backend="remote", base_url=f"http://127.0.0.1:{port}")


def assert_same_tree(got: object, want: object) -> None:
    """Equal values with equal numpy dtypes, recursively (vector infos)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want)
        for key in want:
            assert_same_tree(got[key], want[key])
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        items_got = list(got) if want.dtype == object else got.tolist()
        items_want = list(want) if want.dtype == object else want.tolist()
        for a, b in zip(items_got, items_want, strict=True):
            assert_same_tree(a, b)
    else:
        assert got == want


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
def test_remote_vec_equals_local_vec(server: BackgroundServer, autoreset_mode: str) -> None:
    remote = rock.make_vec(
        SOKOBAN, 4, backend="remote", base_url=server.url, autoreset_mode=autoreset_mode, max_episode_steps=5
    )
    local = rock.make_vec(SOKOBAN, 4, autoreset_mode=autoreset_mode, max_episode_steps=5)
    try:
        assert isinstance(remote, RemoteVecEnv)
        r_obs, r_info = remote.reset(seed=3)
        l_obs, l_info = local.reset(seed=3)
        assert r_obs == l_obs
        assert_same_tree(r_info, l_info)
        rng = np.random.default_rng(1)
        ended = 0
        for _ in range(14):
            actions = [MOVES[i] for i in rng.integers(0, 4, 4)]
            got, want = remote.step(actions), local.step(actions)
            assert got[0] == want[0]
            for a, b in zip(got[1:4], want[1:4], strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b)
            assert_same_tree(got[4], want[4])
            ended += int(want[3].sum())
        assert ended > 0  # autoreset paths were exercised
        mask = np.array([True, False, False, True])
        assert remote.reset(options={"reset_mask": mask})[0] == local.reset(options={"reset_mask": mask})[0]
    finally:
        remote.close()
        local.close()


@pytest.mark.bwrap
def test_sandbox_env_runs_on_the_worker_with_the_same_transcript(server: BackgroundServer) -> None:
    spec = rock.spec("tool:Bash-v0")
    assert "sandbox" in spec.requirements
    remote = rock.make("tool:Bash-v0", backend="remote", base_url=server.url)
    local = rock.make("tool:Bash-v0")
    try:
        assert remote.reset(seed=0) == local.reset(seed=0)
        for action in ["<bash>ls</bash>", "<bash>echo hi > x.txt && cat x.txt</bash>", "no tool call"]:
            assert remote.step(action) == local.step(action)
    finally:
        remote.close()
        local.close()


def test_remote_async_vec_runs_sub_envs_in_worker_processes(server: BackgroundServer) -> None:
    remote = rock.make_vec(SOKOBAN, 4, backend="remote", base_url=server.url, mode="async", num_workers=2)
    local = rock.make_vec(SOKOBAN, 4)
    try:
        assert remote.reset(seed=9)[0] == local.reset(seed=9)[0]
        for move in MOVES[:4]:
            got, want = remote.step([move] * 4), local.step([move] * 4)
            assert got[0] == want[0] and np.array_equal(got[1], want[1])
    finally:
        remote.close()
        local.close()


def test_kwargs_that_are_not_json_are_a_clear_error(server: BackgroundServer) -> None:
    from rock_env.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="JSON-serialisable"):
        rock.make(SOKOBAN, backend="remote", base_url=server.url, level_fn=lambda: 1)
    with pytest.raises(InvalidArgument, match="JSON-serialisable"):
        rock.make_vec(SOKOBAN, 2, backend="remote", base_url=server.url, level_fn=lambda: 1)


def test_none_and_bad_actions_behave_like_local(server: BackgroundServer) -> None:
    """``None`` is GEM's format error on both sides; a non-string is InvalidAction on both sides."""
    remote = rock.make(SOKOBAN, backend="remote", base_url=server.url)
    local = rock.make(SOKOBAN)
    try:
        for env in (remote, local):
            env.reset(seed=4)
        assert remote.step(None) == local.step(None)  # type: ignore[arg-type]
        for env in (remote, local):
            env.reset(seed=4)
            with pytest.raises(InvalidAction):
                env.step(12)  # type: ignore[arg-type]
    finally:
        remote.close()
        local.close()
    with rock.make_vec(SOKOBAN, 2, backend="remote", base_url=server.url) as rvec, rock.make_vec(SOKOBAN, 2) as lvec:
        rvec.reset(seed=1)
        lvec.reset(seed=1)
        r_step, l_step = rvec.step([None, "\\boxed{up}"]), lvec.step([None, "\\boxed{up}"])  # type: ignore[list-item]
        assert r_step[0] == l_step[0] and r_step[1].tolist() == l_step[1].tolist() == [-0.1, 0.0]
        with pytest.raises(InvalidAction, match=r"index 1 \(int\)"):
            rvec.step(["\\boxed{up}", 3])  # type: ignore[list-item]


SERVER_ONLY_ID = "srvonly:Guess-v0"
GEM_ID = "game:GuessTheNumber-v0-easy"
CLIENT = """
import json, sys
import rock_env as rock

url, server_only, gem_id = sys.argv[1:4]
out = {}
for env_id in (server_only, gem_id):
    with rock.make(env_id, backend="remote", base_url=url) as env:
        out[env_id] = [env.reset(seed=3), env.step("5")[:4]]
with rock.make_vec(server_only, 2, backend="remote", base_url=url) as vec:
    out["vec"] = list(vec.reset(seed=1)[0])
gem = sys.modules.get("gem")
out["gem_modules"] = sorted(m for m in sys.modules if m == "gem" or m.startswith("gem."))
out["gem_init_ran"] = gem is not None and "make" in vars(gem)
out["registry_loaded_gem"] = rock.registry._gem_loaded
print(json.dumps(out))
"""


def test_an_id_known_only_to_the_server_needs_no_local_lookup_and_no_gem(server: BackgroundServer) -> None:
    """The client sends the id and kwargs as they are: an id the client's registry does not know
    (registered in the server's process only) and a GEM id both work, and the client never loads
    GEM's registry or envs (only ``gem.core``, which the env base class subclasses)."""
    import json
    import subprocess
    import sys

    rock.register(SERVER_ONLY_ID, "tests.envs_for_tests:GuessEnv", override=True)
    run = subprocess.run(
        [sys.executable, "-c", CLIENT, server.url, SERVER_ONLY_ID, GEM_ID],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["registry_loaded_gem"] is False
    assert out["gem_init_ran"] is False
    assert [m for m in out["gem_modules"] if m.startswith("gem.envs")] == []
    assert set(out["gem_modules"]) <= {"gem", "gem.core", "gem.utils", "gem.utils.seeding"}
    for env_id in (SERVER_ONLY_ID, GEM_ID):
        local = rock.make(env_id)  # a GEM env is no context manager
        want = [list(local.reset(seed=3)), list(local.step("5")[:4])]
        local.close()
        assert out[env_id] == json.loads(json.dumps(want)), env_id
    with rock.make_vec(SERVER_ONLY_ID, 2) as lvec:
        assert out["vec"] == list(lvec.reset(seed=1)[0])


def test_rock_sandbox_is_ready_for_base_url_without_importing_the_remote_client() -> None:
    """``rock.Sandbox`` comes from the dispatch module (``rock_env.api``), which registers the remote
    sandbox classes with the SDK: ``rock.Sandbox(..., base_url=URL)`` needs no other import."""
    import subprocess
    import sys

    code = (
        "import sys, rock_env as rock\n"
        "assert 'rock_env.remote.sandbox' not in sys.modules\n"
        "sync_cls, async_cls = rock.Sandbox, rock.AsyncSandbox\n"
        "from rock_env.sandbox.backends import remote_classes\n"
        "remote_sync, remote_async = remote_classes()\n"
        "print(issubclass(remote_sync, sync_cls), issubclass(remote_async, async_cls), remote_sync.__name__)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "True", "RemoteSandbox"]
