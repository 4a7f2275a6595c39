"""GEM's real wrappers over every built-in env, locally and through a live admin (``backend="remote"``).

GEM's wrappers copy every public attribute of the env when they are built, so each wrapper
here is built on a fresh env BEFORE its first reset. All of GEM's wrappers (every entry of
``gem.wrappers.wrapper_factory.WRAPPER_FACTORY``, read from the installed package) and a
``ToolEnvWrapper`` with GEM's ``PythonCodeTool`` and ``SearchTool`` are built on one env, then
each is reset and stepped in turn. ``SearchTool`` talks to a small search server on loopback
(GEM's msgpack protocol; there is no search engine offline).

The chat wrappers need a tokenizer with ``apply_chat_template``: ``ChatMLTokenizer`` below renders
ChatML (transformers is not a dependency; the wrapper code under test is GEM's own).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from gem.tools.python_code_tool import PythonCodeTool
from gem.tools.search_tool import SearchTool
from gem.tools.tool_env_wrapper import ToolEnvWrapper
from gem.wrappers.wrapper_factory import TOKENIZER_REQUIRED, WRAPPER_FACTORY, get_wrapper_fns

import rock_env as rock
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

#: Keyword arguments for the envs of a namespace (sandboxed envs run on the namespace runtime).
KWARGS = {"tool": {"runtime": "namespace"}, "code": {"runtime": "namespace"}}
#: An action each env handles itself (not a GEM tool call); others use ``sample_random_action()``.
ACTIONS = {
    "game": "\\boxed{up}",
    "tool": "<bash>echo from-the-env</bash>",
    "code": "no code in this answer",  # a format error: ends the episode without grading (cheap)
    "agent": '<tool_call>{"name": "bash", "arguments": {"command": "echo from-the-env"}}</tool_call>',
}
PYTHON_CALL = "<python>print(6 * 7)</python>"
SEARCH_CALL = "<search>rock env</search>"
#: The wrappers that run a python call (GEM runs each in a new python process).
PYTHON_RUNS = ("python_tool", "tools:python+search")


class ChatMLTokenizer:
    """Renders chat messages as ChatML, what GEM's chat wrappers need of a tokenizer."""

    def apply_chat_template(
        self, messages: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = True
    ) -> str:
        assert tokenize is False
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


class _SearchHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        query = msgspec.msgpack.decode(self.rfile.read(int(self.headers["Content-Length"])))
        docs = [{"document": {"contents": f"Result {i} for {query['query']}\nbody {i}"}} for i in range(query["topk"])]
        body = msgspec.msgpack.encode({"result": docs})
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def search_url() -> Iterator[str]:
    """A search server on loopback answering GEM's SearchTool protocol."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SearchHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/retrieve"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private sandbox state root for this module; fails if a sandbox left state behind."""
    root = tmp_path_factory.mktemp("sandbox-state")
    old = os.environ.get("ROCK_ENV_SANDBOX_STATE")
    os.environ["ROCK_ENV_SANDBOX_STATE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("ROCK_ENV_SANDBOX_STATE", None)
    else:
        os.environ["ROCK_ENV_SANDBOX_STATE"] = old
    assert not sorted(p.name for p in root.iterdir()), "sandbox state left behind"


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, state_root: Path) -> Iterator[str]:
    """One admin for the module, served from a background thread."""
    server = BackgroundServer(create_app(ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin"))))).start()
    yield server.url
    server.stop()


def builtin_ids() -> list[str]:
    """Every built-in id (read from the registry, so new families are covered when they land)."""
    return sorted(s.id for s in rock.list_envs(source="builtin"))


def all_wrappers(search_url: str) -> dict[str, Callable[[Any], Any]]:
    """Every wrapper of GEM's factory, plus ToolEnvWrapper with GEM's python and search tools."""
    wrappers: dict[str, Callable[[Any], Any]] = {}
    tokenizer = ChatMLTokenizer()
    for name in WRAPPER_FACTORY:
        if name.startswith("search_tool"):
            continue  # built below with a search_url (the factory's read $SEARCH_URL)
        (fn,) = get_wrapper_fns(name, tokenizer=tokenizer if name in TOKENIZER_REQUIRED else None)
        wrappers[name] = fn
    for name in WRAPPER_FACTORY:
        if name.startswith("search_tool"):
            wrappers[name] = lambda env, n=name: WRAPPER_FACTORY[n](env, tools=[SearchTool(search_url=search_url)])
    wrappers["tools:python+search"] = lambda env: ToolEnvWrapper(
        env, tools=[PythonCodeTool(timeout=10), SearchTool(search_url=search_url, topk=2)], max_tool_uses=3
    )
    return wrappers


@pytest.fixture(scope="module")
def level_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Sokoban level cache for the module (every wrapper resets with the same seed: one generation)."""
    return str(tmp_path_factory.mktemp("sokoban-levels"))


def make(env_id: str, backend: str, admin: str | None, level_cache: str) -> Any:
    kwargs: dict[str, Any] = dict(KWARGS.get(env_id.split(":")[0], {}))
    if env_id.startswith("game:Sokoban"):
        kwargs["level_cache"] = level_cache
    if backend == "remote":
        kwargs.update(backend="remote", base_url=admin)
    return rock.make(env_id, **kwargs)


def env_action(env: Any, env_id: str) -> str:
    action = ACTIONS.get(env_id.split(":")[0])
    return action if action is not None else str(env.sample_random_action())


def check_wrapper(name: str, wrapper: Any, env: Any, env_id: str, seed: int) -> None:
    """Reset and step one wrapper; check what GEM's wrapper adds on top of the env's own answer."""
    obs, info = wrapper.reset(seed=seed)
    first = env.render()  # the env's own last observation (asked of the server when remote)
    assert isinstance(obs, str) and first and first in obs, name
    action = env_action(env, env_id)
    uses_tools = hasattr(wrapper, "tool_use_counter") or hasattr(getattr(wrapper, "env", None), "tool_use_counter")
    if uses_tools and name in PYTHON_RUNS:  # one python run per env: each costs a process
        obs, reward, terminated, truncated, info = wrapper.step(PYTHON_CALL)
        assert "Code execution result: 42" in obs, (name, obs)
        assert info["tool_use_counter"] == 1 and info["use_tool"] is True
        assert not terminated
    if uses_tools and "search" in name:
        obs, reward, terminated, truncated, info = wrapper.step(SEARCH_CALL)
        assert "<information>Doc 1(Title: Result 0 for rock env)" in obs, (name, obs)
        assert not terminated
    steps_before = env.elapsed_steps
    obs, reward, terminated, truncated, info = wrapper.step(action)
    assert env.elapsed_steps == steps_before + 1, f"{name}: the action did not reach the env"
    latest = env.render()
    assert latest and latest in obs, name
    assert isinstance(reward, float | int) and isinstance(terminated, bool) and isinstance(truncated, bool)
    if name.startswith("concat"):
        assert first in obs, f"{name} keeps the history"
    if name in ("concat_with_action", "concat_chat", "concat_chat_on_reset"):
        assert info.get("parsed_action", action) in obs
    if name == "concat_chat":
        assert obs.startswith("<|im_start|>user\n") and "<|im_start|>assistant\n" in obs
    if name == "episode_tracking":
        assert info["step_counter"] == 1 and info["cumulative_rewards"] == reward


@pytest.mark.parametrize("backend", ["local", "remote"])
@pytest.mark.parametrize("env_id", builtin_ids())
def test_every_gem_wrapper_built_before_reset(
    env_id: str, backend: str, admin: str, search_url: str, level_cache: str
) -> None:
    env = make(env_id, backend, admin, level_cache)
    try:
        # all wrappers are built on the env before its first reset (what GEM's make_vec and ROLL do)
        wrappers = {name: fn(env) for name, fn in all_wrappers(search_url).items()}
        assert getattr(env, "_sandbox", None) is None, "building a wrapper must not start the sandbox"
        for name, wrapper in wrappers.items():
            check_wrapper(name, wrapper, env, env_id, seed=7)
        # the wrapper's close is the env's close (GEM's wrappers copy the bound method)
        next(iter(wrappers.values())).close()
        assert env._closed
    finally:
        env.close()


@pytest.mark.parametrize("backend", ["local", "remote"])
def test_stacked_wrappers_as_gem_make_vec_applies_them(backend: str, admin: str, search_url: str) -> None:
    """GEM's documented order: tool wrapper, then an observation wrapper, then episode tracking."""
    import gem

    kwargs: dict[str, Any] = {"backend": "remote", "base_url": admin} if backend == "remote" else {}
    wrappers = get_wrapper_fns("python_tool,concat_with_action,episode_tracking")
    vec = gem.make_vec(["game:Sokoban-v0-easy"] * 2, wrappers=wrappers, seed=3, **kwargs)
    try:
        obs, infos = vec.reset(seed=10)
        assert all("Sokoban" in o and "<python>" in o for o in obs)
        obs, _, _, _, infos = vec.step([PYTHON_CALL, "\\boxed{left}"])
        assert "Code execution result: 42" in obs[0] and infos[0]["tool_use_counter"] == 1
        assert infos[1]["step_counter"] == 1 and "\\boxed{left}" in obs[1]
    finally:
        for env in vec.envs:
            env.close()


def test_remote_gem_make_matches_local(admin: str) -> None:
    """ROLL's gem.make path with env_config pointing at a server gives the local transcript."""
    import gem

    local = gem.make(env_id="game:Sokoban-v0-hard", seed=5)
    remote = gem.make(env_id="game:Sokoban-v0-hard", seed=5, backend="remote", base_url=admin)
    try:
        assert type(remote).__name__ == "RemoteEnv" and remote.env_id == "game:Sokoban-v0-hard"
        assert remote.reset(seed=5) == local.reset(seed=5)
        for move in ("up", "left", "down"):
            assert remote.step(action=f"\\boxed{{{move}}}") == local.step(action=f"\\boxed{{{move}}}")
    finally:
        local.close()
        remote.close()


PLUGIN_ENVS = """
import rock_env
from rock_env.core import Env, text_space

class CountEnv(Env):
    def __init__(self, target: int = 2, *, seed=None):
        super().__init__(seed=seed)
        self.target = target
        self.action_space = text_space(max_length=16)
    def _reset(self, seed, options):
        self.n = 0
        return "count to %d" % self.target, {}
    def _step(self, action):
        self.n += 1
        return "at %d" % self.n, float(self.n >= self.target), self.n >= self.target, False, {}

rock_env.register("gemplug:Count-v0", "gemplug_pkg.envs:CountEnv")
"""

PLUGIN_PROBE = """
import json, sys, tempfile
import gem, rock_env as rock
from gem.wrappers.wrapper_factory import WRAPPER_FACTORY
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings

class Tok:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(m["role"] + ":" + m["content"] + "\\n" for m in messages)

server = BackgroundServer(create_app(ServerSettings(data_dir=tempfile.mkdtemp()))).start()
out = {}
try:
    for backend in ("local", "remote"):
        kwargs = {"backend": "remote", "base_url": server.url} if backend == "remote" else {}
        for name, factory in WRAPPER_FACTORY.items():
            if name.startswith("search"):
                continue
            env = gem.make("gemplug:Count-v0", **kwargs)  # a plugin id, through GEM's own make
            wrapped = factory(env, tokenizer=Tok()) if "chat" in name else factory(env)
            obs, _ = wrapped.reset(seed=0)
            step = wrapped.step("go")
            out[backend + "/" + name] = ["count to 2" in obs, "at 1" in step[0], step[2]]
            env.close()
finally:
    server.stop()
print(json.dumps(out))
"""


def test_plugin_env_under_every_gem_wrapper_locally_and_remotely(tmp_path: Path) -> None:
    """A plugin (an installed distribution with a ``rock_env.envs`` entry point), never imported by hand."""
    import subprocess
    import sys

    site = tmp_path / "site"
    (site / "gemplug_pkg").mkdir(parents=True)
    (site / "gemplug_pkg" / "__init__.py").write_text("")
    (site / "gemplug_pkg" / "envs.py").write_text(PLUGIN_ENVS)
    dist = site / "gemplug-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gemplug\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[rock_env.envs]\ngemplug = gemplug_pkg.envs\n")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-c", PLUGIN_PROBE], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [f"{b}/{n}" for b in ("local", "remote") for n in WRAPPER_FACTORY if not n.startswith("search")]
    assert sorted(out) == sorted(expected)
    assert all(v == [True, True, False] for v in out.values()), out
