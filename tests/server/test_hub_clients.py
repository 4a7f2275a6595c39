"""``hub:NAME-vN`` from clients of a real admin process: make, make_vec, Hydra configs, ``rock-env rollout``,
and specs with an ``entry_point`` into a package installed on the server only.

The admin runs in its own process (``rock-env admin start``), as in a deployment: this test process
is a plain client that resolves hub ids over HTTP through ``$ROCK_ENV_URL``. A small env package is
pip-installed (cached under ~/.cache/rock-env) into a directory that only the admin has on its path,
so a hub env of it can only run there; a module that merely lies on the server's path (no installed
distribution) is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.errors import EntryPointError, HubSpecNotFound, InvalidEnvKwargs
from rock_env.registry import hub_source
from rock_env.remote.env import RemoteEnv
from rock_env.server.testing import ServerProcess

pytestmark = pytest.mark.server

REMOTE = {"name": "sokoban-one", "version": 1, "env": "game:Sokoban-v0-easy", "kwargs": {"num_boxes": 1}}
LOCAL = {**REMOTE, "name": "sokoban-one-local", "local": True}
ACTIONS = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}"]


PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "rock-env-hub-test-plugin"
version = "0.0.1"

[tool.setuptools]
packages = ["hub_test_plugin"]
"""

ENVS = """
from rock_env.core import Env, text_space
from rock_env._gem import gem_core


class EchoEnv(Env):
    def __init__(self, prefix: str = "echo", rounds: int = 2, *, seed=None):
        super().__init__(seed=seed)
        self.prefix, self.rounds = prefix, rounds
        self.action_space = text_space(max_length=32)
        self.observation_space = text_space(max_length=64)

    def _reset(self, seed, options):
        self.n = 0
        return f"{self.prefix} ready", {}

    def _step(self, action):
        self.n += 1
        done = self.n >= self.rounds
        return f"{self.prefix}:{action}", float(len(action)), done, False, {}


class GemEcho(gem_core().Env):
    def __init__(self, word: str = "hi", **_):
        super().__init__()
        self.word = word

    def reset(self, seed=None):
        return self.word, {}

    def step(self, action):
        return f"{self.word}:{action}", 1.0, True, False, {}


class NotAnEnv:
    def __init__(self, prefix: str = "x"):
        self.prefix = prefix
"""

LOOSE = """
from rock_env.core import Env


class LooseEnv(Env):
    pass
"""


CACHE = Path.home() / ".cache" / "rock-env"


def plugin_site() -> Path:
    """The test package installed with ``pip --target`` (cached by the hash of its sources; once across workers)."""
    digest = hashlib.sha256((PYPROJECT + ENVS).encode()).hexdigest()[:16]
    site = CACHE / f"hub-test-plugin-{digest}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "hub-test-plugin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (site / ".complete").exists():
            shutil.rmtree(site, ignore_errors=True)
            src = site.with_name(site.name + "-src")
            shutil.rmtree(src, ignore_errors=True)
            (src / "hub_test_plugin").mkdir(parents=True)
            (src / "pyproject.toml").write_text(PYPROJECT)
            (src / "hub_test_plugin" / "__init__.py").write_text("")
            (src / "hub_test_plugin" / "envs.py").write_text(textwrap.dedent(ENVS))
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
            subprocess.run([*pip, "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
            shutil.rmtree(src, ignore_errors=True)
            (site / ".complete").write_text("ok\n")
    return site


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    loose = tmp_path_factory.mktemp("loose_modules")
    (loose / "loose_env.py").write_text(LOOSE)
    env = {"PYTHONPATH": f"{plugin_site()}:{loose}"}
    srv = ServerProcess.admin(tmp_path_factory.mktemp("hub-clients"), env=env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            for spec in (REMOTE, LOCAL):
                http.post("/api/v1/hub", json={"spec": spec}).raise_for_status()
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def http(admin: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin.url, timeout=60) as client:
        yield client


@pytest.fixture()
def client_env(admin: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ROCK_ENV_URL", admin.url)
    monkeypatch.delenv("ROCK_ENV_TOKEN", raising=False)
    hub_source.clear_cache()
    yield admin.url
    hub_source.clear_cache()


def transcript(env: Any, seed: int = 5) -> list[Any]:
    obs, _ = env.reset(seed=seed)
    out: list[Any] = [obs]
    for action in ACTIONS:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    env.close()
    return out


def steps_served(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    match = re.search(r"^rock_env_env_steps_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_make_resolves_through_the_hub_and_runs_on_the_server(client_env: str) -> None:
    reference = transcript(rock.make("game:Sokoban-v0-easy", num_boxes=1))
    before = steps_served(client_env)
    env = rock.make("hub:sokoban-one-v1")
    assert isinstance(env, RemoteEnv) and env.base_url == client_env
    assert env.spec is not None and env.spec.id == "hub:sokoban-one-v1"
    assert transcript(env) == reference
    assert steps_served(client_env) - before == len(reference) - 1  # the steps ran on the server
    remote = rock.make("hub:sokoban-one-v1", backend="remote")  # resolved by the server itself
    assert transcript(remote) == reference


def test_a_local_spec_builds_in_this_process(client_env: str) -> None:
    from rock_env.games.sokoban.env import SokobanEnv

    env = rock.make("hub:sokoban-one-local-v1")
    assert isinstance(env, SokobanEnv) and env.spec is not None and env.spec.id == "hub:sokoban-one-local-v1"
    assert transcript(env) == transcript(rock.make("game:Sokoban-v0-easy", num_boxes=1))


def test_make_vec_local_and_remote(client_env: str) -> None:
    seeds = [1, 2]
    reference = [rock.make("game:Sokoban-v0-easy", num_boxes=1).reset(seed=s)[0] for s in seeds]
    for backend in ("local", "remote"):
        vec = rock.make_vec("hub:sokoban-one-v1", 2, backend=backend)
        try:
            obs, _ = vec.reset(seed=seeds)
            assert list(obs) == reference, backend
            _, rewards, _, _, _ = vec.step(["\\boxed{up}", "\\boxed{down}"])
            assert len(rewards) == 2
        finally:
            vec.close()


def test_hydra_config_with_a_hub_id(client_env: str) -> None:
    from rock_env.config.compose import compose_config

    cfg = compose_config(["env.id=hub:sokoban-one-v1", "+env.kwargs.max_turns=2"])
    env = rock.make_from_config(cfg)
    try:
        assert isinstance(env, RemoteEnv)
        env.reset(seed=0)
        *_, truncated, _ = env.step("\\boxed{up}")
        _, _, terminated, truncated, _ = env.step("\\boxed{up}")
        assert terminated or truncated  # max_turns=2 reached the server's env
    finally:
        env.close()


def test_rollout_with_a_hub_env(client_env: str, tmp_path: Path) -> None:
    before = steps_served(client_env)
    out = tmp_path / "rollout"
    command = [sys.executable, "-m", "rock_env.cli", "rollout", "env.id=hub:sokoban-one-v1", "episodes=2"]
    command += ["progress=false", "policy=random", f"output_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "ROCK_ENV_URL": client_env},
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert steps_served(client_env) - before == sum(e["length"] for e in episodes) > 0


def test_bad_kwargs_of_a_server_env_are_refused_here(client_env: str) -> None:
    with pytest.raises(InvalidEnvKwargs, match="'num_boxs' -> 'num_boxes'"):
        rock.make("hub:sokoban-one-v1", num_boxs=2)


def test_unknown_hub_ids_name_the_versions(client_env: str) -> None:
    with pytest.raises(HubSpecNotFound, match=r"its versions: \[1\]"):
        rock.make("hub:sokoban-one-v4")
    with pytest.raises(HubSpecNotFound, match="no hub spec named 'nothing'"):
        rock.make("hub:nothing-v1")


# --- entry points into a package installed on the server ------------------------------


def push_spec(http: httpx.Client, **spec: Any) -> httpx.Response:
    return http.post("/api/v1/hub", json={"spec": {"version": 1, **spec}})


def test_an_installed_env_class_is_accepted_and_runs_on_the_server(http: httpx.Client, client_env: str) -> None:
    pushed = push_spec(http, name="echo", entry_point="hub_test_plugin.envs:EchoEnv", kwargs={"prefix": "hub"})
    assert pushed.status_code == 201, pushed.text
    resolved = pushed.json()["version"]["resolved"]
    assert resolved == {
        "entry_point": "hub_test_plugin.envs:EchoEnv",
        "kwargs": {"prefix": "hub"},
        "requirements": [],
        "max_episode_steps": None,
        "source": "user",
        "base_env": None,
        "arguments": ["prefix", "rounds", "seed"],
    }
    with pytest.raises(ImportError):  # the client does not have the package ...
        __import__("hub_test_plugin")
    env = rock.make("hub:echo-v1", rounds=3)  # ... and still runs its env, on the server
    assert isinstance(env, RemoteEnv)
    assert env.reset(seed=0)[0] == "hub ready"
    assert env.step("abc")[:3] == ("hub:abc", 3.0, False)
    env.close()


def test_a_gem_style_env_class_is_accepted_with_its_named_kwargs_only(http: httpx.Client) -> None:
    ok = push_spec(http, name="gem-echo", entry_point="hub_test_plugin.envs:GemEcho", kwargs={"word": "yo"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["version"]["resolved"]["source"] == "gem"
    made = http.post("/api/v1/envs", json={"env_id": "hub:gem-echo-v1"}).json()
    assert http.post(f"/api/v1/envs/{made['id']}/reset", json={}).json()["observation"] == "yo"
    http.delete(f"/api/v1/envs/{made['id']}")
    typo = push_spec(http, name="gem-typo", entry_point="hub_test_plugin.envs:GemEcho", kwargs={"wrod": "yo"})
    assert typo.status_code == 422 and "'wrod' -> 'word'" in typo.json()["message"]


@pytest.mark.parametrize(
    ("entry_point", "kwargs", "words"),
    [
        ("hub_test_plugin.envs:NotAnEnv", {}, "not an env class"),
        ("hub_test_plugin.envs:Missing", {}, "has no 'Missing'"),
        ("hub_test_plugin.nothing:EchoEnv", {}, "has no module"),
        ("loose_env:LooseEnv", {}, "no package installed on the server provides the module 'loose_env'"),
        ("hub_test_plugin.envs:EchoEnv", {"rounds": "two"}, "rounds"),
        ("hub_test_plugin.envs:EchoEnv", {"prefx": "a"}, "'prefx' -> 'prefix'"),
        ("hub_test_plugin.envs:EchoEnv", {"data_path": "/etc/shadow"}, "/etc/shadow"),
        ("not a path", {}, "must look like 'package.module:ClassName'"),
    ],
)
def test_bad_entry_points_are_refused(http: httpx.Client, entry_point: str, kwargs: dict[str, Any], words: str) -> None:
    answer = push_spec(http, name="bad-ep", entry_point=entry_point, kwargs=kwargs)
    assert 400 <= answer.status_code < 500, answer.text
    assert words in answer.json()["message"]
    assert http.get("/api/v1/hub/bad-ep").status_code == 404


def test_a_local_spec_needs_the_package_on_the_client(http: httpx.Client, client_env: str) -> None:
    assert push_spec(http, name="echo-local", entry_point="hub_test_plugin.envs:EchoEnv", local=True).status_code == 201
    with pytest.raises(EntryPointError, match="hub_test_plugin"):
        rock.make("hub:echo-local-v1")  # built here (local: true), and this process lacks the package
    remote = rock.make("hub:echo-local-v1", backend="remote")  # the server has it
    assert remote.reset()[0] == "echo ready"
    remote.close()
