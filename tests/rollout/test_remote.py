"""Rollouts with backend=remote against a real admin (uvicorn on a free loopback port)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.config import compose_config, make_from_config
from rock_env.remote import RemoteEnv
from rock_env.rollout import read_jsonl, run_rollout
from rock_env.rollout.cli import main
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings
from tests.rollout.helpers import LINE_ID, files_of, register_line_env

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    register_line_env()  # the embedded worker builds envs in this process
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin")))
    server = BackgroundServer(create_app(settings)).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_remote_scripted_rollout_writes_the_same_bytes_as_local(admin: str, tmp_path: Path) -> None:
    common = ["env=sokoban_easy", "policy=scripted", "episodes=4", "seed=2", "progress=false"]
    run_rollout(compose_config(common), tmp_path / "local")
    run_rollout(compose_config([*common, "backend=remote", f"backend.base_url={admin}"]), tmp_path / "remote")
    assert dict(files_of(tmp_path / "local")) == dict(files_of(tmp_path / "remote"))
    assert all(e["success"] for e in read_jsonl(tmp_path / "remote" / "episodes.jsonl"))


def test_remote_slots_run_in_threads_with_the_same_episodes(admin: str, tmp_path: Path) -> None:
    common = [f"env.id={LINE_ID}", "policy=scripted", "policy.target=tests.rollout.helpers:walk_to_target",
              "episodes=6", "progress=false"]  # fmt: skip
    run_rollout(compose_config([*common, "num_envs=1"]), tmp_path / "local")
    run_rollout(compose_config([*common, "num_envs=3", "backend=remote", f"backend.base_url={admin}"]), tmp_path / "r")
    by_index = [
        sorted(read_jsonl(d / "episodes.jsonl"), key=lambda e: e["episode"])
        for d in (tmp_path / "local", tmp_path / "r")
    ]
    assert by_index[0] == by_index[1]


def test_remote_url_from_the_environment(admin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCK_ENV_URL", admin)
    env = make_from_config(compose_config([f"env.id={LINE_ID}", "backend=remote"]))
    try:
        assert isinstance(env, RemoteEnv) and env.base_url == admin
        obs, _ = env.reset(seed=0)
        assert "Move P onto T" in obs
    finally:
        env.close()
    vec = make_from_config(compose_config([f"env.id={LINE_ID}", "backend=remote", "num_envs=2"]))
    try:
        obs, _ = vec.reset(seed=0)
        assert len(obs) == 2
    finally:
        vec.close()


def test_remote_sweep(admin: str, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code = main(["-m", "backend=remote", f"backend.base_url={admin}", "env=sokoban_easy,sokoban_hard",
                 "policy=scripted", "seed=0,1", "episodes=2", "progress=false", f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"} and {r["success_rate"] for r in rows} == {"1.0"}


@pytest.mark.bwrap
def test_remote_bash_env_runs_commands_in_a_namespace_sandbox(admin: str, tmp_path: Path) -> None:
    cfg = compose_config(
        ["env=bash", "runtime=namespace", "backend=remote", f"backend.base_url={admin}", "policy=scripted",
         "policy.target=rock_env.policies.scripted:constant",
         "+policy.kwargs.action='<bash>echo remote-$((40+2)) $(id -u)</bash>'",
         "+env.kwargs.max_turns=2", "episodes=1", "progress=false"]
    )  # fmt: skip
    run_rollout(cfg, tmp_path)
    steps = [r for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert len(steps) == 2 and "remote-42" in steps[0]["observation"]
    assert steps[0]["info"]["exit_code"] == 0
