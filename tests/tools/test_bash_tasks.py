"""The bash task model, the built-in task set and the verifier script (no sandbox needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rock_env.errors import ConfigError
from rock_env.tools.bash_tasks import BashTask, builtin_tasks, load_tasks, score_verifier_output, verifier_script
from tests.tools.bash_solutions import SOLUTIONS


def test_builtin_set_is_large_varied_and_solved_in_the_tests() -> None:
    tasks = builtin_tasks()
    assert len(tasks) >= 30
    categories = {t.category for t in tasks}
    assert {"files", "text", "git", "fix", "processes", "permissions"} <= categories
    assert len({t.id for t in tasks}) == len(tasks)
    assert set(SOLUTIONS) == {t.id for t in tasks}, "every task needs a reference solution"


def test_load_tasks_from_file_and_list(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text("- id: t1\n  description: make a file\n  checks: ['[ -f a ]']\n")
    (task,) = load_tasks(path)
    assert task.id == "t1" and task.checks == ["[ -f a ]"]
    assert load_tasks([{"id": "x", "description": "d", "checks": ["true"]}])[0].id == "x"
    assert load_tasks([task])[0] == task
    assert len(load_tasks(None)) == len(builtin_tasks())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("- id: a\n  description: d\n  checks: []\n", "invalid"),
        ("- id: a\n  description: d\n  checks: ['true']\n- id: a\n  description: d\n  checks: ['true']\n", "duplicate"),
        ("{a: 1}", "expected a list"),
        ("[]", "empty"),
        ("- id: a\n  description: d\n  checks: ['  ']\n", "invalid"),
        ("- [unclosed", "not valid YAML"),
    ],
)
def test_bad_task_files_raise_config_errors(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_tasks(path)


def test_missing_task_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_tasks("/nonexistent/tasks.yaml")


def test_verifier_counts_checks_and_ignores_forged_lines(tmp_path: Path) -> None:
    task = BashTask(id="t", description="d", checks=["[ -f a ]", "[ -f b ]", "echo PASS 2; false"])
    (tmp_path / "a").write_text("")
    script, nonce = verifier_script(task)
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-s"],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout
    forged = out + "ROCKVdeadbeef PASS 1\nPASS 1\n"
    reward, results = score_verifier_output(forged, nonce, 3)
    assert results == [True, False, False]
    assert reward == pytest.approx(1 / 3)
    assert score_verifier_output("", nonce, 3) == (0.0, [False, False, False])
