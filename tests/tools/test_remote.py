"""The tool envs through a real admin server (backend="remote"): same transcript as local."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings
from tests.tools.bash_solutions import SOLUTIONS
from tests.tools.python_solutions import REFERENCE, WRONG

pytestmark = [pytest.mark.server, pytest.mark.bwrap]


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, module_state: Path) -> Iterator[str]:
    """An admin on a free loopback port, served from a background thread."""
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin")))
    server = BackgroundServer(create_app(settings)).start()
    yield server.url
    server.stop()


def transcript(env: rock.Env, actions: list[str], **reset: object) -> list[object]:
    obs, info = env.reset(**reset)  # type: ignore[arg-type]
    out: list[object] = [obs, info["task_id"]]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated))
    return out


@pytest.mark.parametrize(
    ("env_id", "reset", "actions"),
    [
        (
            "tool:Bash-v0",
            {"options": {"task_id": "text/csv-sum"}},
            ["<bash>ls</bash>", "oops", f"<bash>{SOLUTIONS['text/csv-sum']}</bash>", "<submit/>"],
        ),
        ("tool:Bash-v0", {"seed": 11}, ["<bash>echo hi</bash>", "<submit/>"]),
        ("code:Python-v0", {"options": {"task_id": "py/caesar"}}, [f"```python\n{WRONG['py/caesar']}\n```"]),
        ("code:Python-v0-strict", {"options": {"task_id": "py/caesar"}}, [f"```python\n{REFERENCE['py/caesar']}\n```"]),
    ],
)
def test_remote_matches_local(admin: str, env_id: str, reset: dict[str, object], actions: list[str]) -> None:
    local = rock.make(env_id, runtime="namespace")
    remote = rock.make(env_id, backend="remote", base_url=admin, runtime="namespace")
    try:
        assert transcript(remote, actions, **reset) == transcript(local, actions, **reset)
    finally:
        local.close()
        remote.close()


def test_remote_tool_envs_get_an_isolating_runtime_and_no_host_files(admin: str, tmp_path: Path) -> None:
    """Without runtime=, the server picks namespace (never local); tasks come inline, not as host paths."""
    task = {"id": "t/hello", "description": "Create a file named done.", "checks": ["test -f done"]}
    path = tmp_path / "tasks.yaml"
    path.write_text("- id: t/file\n  description: x\n  checks: ['true']\n")
    with pytest.raises(rock.errors.PolicyViolation, match=r"worker\.data_dirs"):
        rock.make("tool:Bash-v0", backend="remote", base_url=admin, tasks=str(path))
    with pytest.raises(rock.errors.PolicyViolation, match=r"worker\.allow_local_runtime"):
        rock.make("tool:Bash-v0", backend="remote", base_url=admin, runtime="local", tasks=[task])
    remote = rock.make("tool:Bash-v0", backend="remote", base_url=admin, tasks=[task])
    local = rock.make("tool:Bash-v0", runtime="namespace", tasks=[task])
    try:
        actions = ["<bash>touch done; cat /proc/self/uid_map | wc -l</bash>", "<submit/>"]
        assert transcript(remote, actions, seed=0) == transcript(local, actions, seed=0)
    finally:
        remote.close()
        local.close()
