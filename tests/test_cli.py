"""The `rock-env` command: dispatcher and `envs list/show`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from rock_env.cli import COMMANDS, main
from rock_env.registry.spec import EnvSpec


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rock_env.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_module_exists() -> None:
    for module_name, _ in COMMANDS.values():
        assert callable(importlib.import_module(module_name).main)


def test_envs_list_with_namespace() -> None:
    result = run_cli("envs", "list", "--namespace", "game")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("game:Sokoban-v0-easy ") and "builtin" in line for line in lines)
    assert all(line.startswith("game:") for line in lines)


def test_envs_show_json_round_trips() -> None:
    result = run_cli("envs", "show", "game:Sokoban-v0-hard", "--json")
    assert result.returncode == 0, result.stderr
    spec = EnvSpec.from_dict(json.loads(result.stdout))
    assert spec.id == "game:Sokoban-v0-hard" and spec.source == "builtin"


def test_envs_show_unknown_id_fails_with_suggestion() -> None:
    result = run_cli("envs", "show", "game:Sokobann-v0-easy")
    assert result.returncode == 1
    assert "game:Sokoban-v0-easy" in result.stderr
