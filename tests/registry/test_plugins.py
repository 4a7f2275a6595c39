"""Third-party plugins: a real package with `rock_env.envs` entry points, pip-installed into a temp dir."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "rock-env-demo-plugin"
version = "0.0.1"

[tool.setuptools]
packages = ["demo_plugin"]

[project.entry-points."rock_env.envs"]
demo = "demo_plugin.envs"
demo_callable = "demo_plugin.more:register_all"
broken = "demo_plugin.broken"
"""

ENVS = """
import rock_env
from rock_env.core import Env, text_space

class CountEnv(Env):
    def __init__(self, target: int = 3, *, seed=None):
        super().__init__(seed=seed)
        self.target = target
        self.action_space = text_space(max_length=16)
        self.observation_space = text_space(max_length=64)
    def _reset(self, seed, options):
        self.n = 0
        return "count to %d" % self.target, {}
    def _step(self, action):
        self.n += 1
        done = self.n >= self.target
        return str(self.n), float(done), done, False, {}

rock_env.register("demo:Count-v0", "demo_plugin.envs:CountEnv", kwargs={"target": 2})
"""

MORE = """
import rock_env

def register_all():
    rock_env.register("demo:Count-v1", "demo_plugin.envs:CountEnv", kwargs={"target": 5})
"""

BROKEN = "raise RuntimeError('this plugin is broken on purpose')\n"

PROBE = """
import json, rock_env as rock
out = {}
env = rock.make("demo:Count-v0")
env.reset(seed=0)
out["steps"] = [env.step("go")[0], env.step("go")[2]]
out["v1_target"] = rock.make("demo:Count-v1").target
spec = rock.spec("demo:Count-v0")
out["source"], out["plugin"] = spec.source, spec.plugin
out["listed"] = sorted(s.id for s in rock.list_envs(namespace="demo"))
out["failures"] = [f.name for f in rock.registry.plugins.failures]
out["failure_text"] = rock.registry.plugins.error_summary()
try:
    rock.make("demo:Nope-v0")
except rock.EnvNotFound as exc:
    out["not_found"] = str(exc)
out["builtin_ok"] = rock.spec("game:Sokoban-v0-easy").id
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("plugin_src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    pkg = src / "demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "envs.py").write_text(textwrap.dedent(ENVS))
    (pkg / "more.py").write_text(textwrap.dedent(MORE))
    (pkg / "broken.py").write_text(BROKEN)
    site = tmp_path_factory.mktemp("plugin_site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return site


def test_plugin_envs_are_found_without_import(plugin_site: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(plugin_site), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["steps"] == ["1", True]
    assert out["v1_target"] == 5
    assert (out["source"], out["plugin"]) == ("plugin", "demo")
    assert out["listed"] == ["demo:Count-v0", "demo:Count-v1"]
    # the broken plugin is reported by name with its error, and breaks nothing else
    assert out["failures"] == ["broken"]
    assert "plugin 'broken'" in out["failure_text"] and "broken on purpose" in out["failure_text"]
    assert "demo:Count-v0" in out["not_found"] and "plugin 'broken'" in out["not_found"]
    assert out["builtin_ok"] == "game:Sokoban-v0-easy"
    assert "broken on purpose" in result.stderr  # logged as a warning
