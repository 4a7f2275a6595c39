"""``rock-env hub push|list|show`` against a real admin (uvicorn on loopback) that has an API token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rock_env.cli import main
from rock_env.server.runner import BackgroundServer
from tests.server.conftest import serve

pytestmark = pytest.mark.server

TOKEN = "hub-cli-token-42"
SPEC = """\
# a hub spec
name: sokoban-cli
version: 1
description: Sokoban, one box
tags: [game, easy]
env: game:Sokoban-v0-easy
kwargs:
  num_boxes: 1
"""


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(tmp_path_factory.mktemp("hub-cli"), token=TOKEN)
    yield srv
    srv.stop()


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def cli(admin: BackgroundServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``rock-env ARGS`` in this process against the admin: (exit code, stdout, stderr)."""
    monkeypatch.setenv("ROCK_ENV_URL", admin.url)
    monkeypatch.setenv("ROCK_ENV_TOKEN", TOKEN)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["hub", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_push_list_show(cli: Cli, tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    code, out, _ = cli("push", spec)
    assert code == 0 and out.startswith("hub:sokoban-cli-v1: pushed")
    code, out, _ = cli("push", spec)
    assert code == 0 and "unchanged" in out
    code, out, _ = cli(
        "push", write(tmp_path, SPEC.replace("version: 1", "version: 2").replace("num_boxes: 1", "num_boxes: 2"))
    )
    assert code == 0 and "hub:sokoban-cli-v2: pushed" in out

    code, out, _ = cli("list")
    assert code == 0
    line = next(x for x in out.splitlines() if "sokoban-cli" in x)
    assert line.startswith("hub:sokoban-cli-v2") and "game:Sokoban-v0-easy" in line and "[game, easy]" in line
    code, out, _ = cli("list", "--json", "--tag", "easy")
    assert [e["name"] for e in json.loads(out)["envs"]] == ["sokoban-cli"]

    code, out, _ = cli("show", "sokoban-cli")
    assert code == 0
    assert out.index("id:           hub:sokoban-cli-v2") < out.index("id:           hub:sokoban-cli-v1")
    assert "builds:       rock_env.games.sokoban.env:SokobanEnv" in out and "by default" in out
    code, out, _ = cli("show", "hub:sokoban-cli-v1", "--json")
    assert code == 0 and json.loads(out)["spec"]["kwargs"] == {"num_boxes": 1}


def test_a_changed_version_is_refused(cli: Cli, tmp_path: Path) -> None:
    spec = SPEC.replace("sokoban-cli", "sokoban-fixed")
    assert cli("push", write(tmp_path, spec))[0] == 0
    code, _, err = cli("push", write(tmp_path, spec.replace("num_boxes: 1", "num_boxes: 2"), "changed.yaml"))
    assert code == 1 and "immutable" in err and "version 2" in err


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (SPEC + "colour: red\n", "unknown key 'colour'"),
        (SPEC.replace("num_boxes: 1", "num_boxs: 1"), "'num_boxs' -> 'num_boxes'"),
        (SPEC.replace("game:Sokoban-v0-easy", "game:Nope-v0"), "unknown env"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a list\n", "must hold a mapping"),
        (SPEC.replace("version: 1", "version: 2026-01-01"), "not plain JSON data"),
    ],
)
def test_bad_spec_files_are_refused_with_the_reason(cli: Cli, tmp_path: Path, text: str, words: str) -> None:
    code, _, err = cli("push", write(tmp_path, text.replace("sokoban-cli", "sokoban-bad")))
    assert code == 1 and words in err


def test_a_missing_file_and_an_unknown_name(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("push", str(tmp_path / "nope.yaml"))
    assert code == 1 and "cannot read the spec file" in err
    code, _, err = cli("show", "no-such-env")
    assert code == 1 and "no hub spec named 'no-such-env'" in err


def test_the_command_needs_the_token(admin: BackgroundServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ROCK_ENV_TOKEN", "ROCK_ENV_URL")}
    spec = write(tmp_path, SPEC.replace("sokoban-cli", "sokoban-token"))
    command = [sys.executable, "-m", "rock_env.cli", "hub", "push", spec, "--url", admin.url]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 1 and "needs an API token" in refused.stderr
    pushed = subprocess.run([*command, "--token", TOKEN], capture_output=True, text=True, env=env, timeout=120)
    assert pushed.returncode == 0 and "hub:sokoban-token-v1: pushed" in pushed.stdout
