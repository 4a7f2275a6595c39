"""cluster=ray rollouts on a real Ray head on 127.0.0.1: same bytes as local, retries, failures, cleanup.

Most tests share one Ray session per module (started here, used with ``cluster.address=auto``);
``cluster.address=local`` and the CLI run in subprocesses, which start and end their own head.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rock_env.cluster.ray_connect import LOOPBACK_ENV_VAR
from rock_env.config import compose_config, validate_rollout_config
from rock_env.config.schema import RayClusterConfig
from rock_env.errors import ConfigError, ServerUnavailable, WorkerLost
from rock_env.rollout import episode_seeds, ray_runner, read_jsonl, run_rollout
from rock_env.rollout.ray_runner import worker_count
from tests.processes import pids_with_cmdline
from tests.rollout.helpers import files_of

REPO = Path(__file__).resolve().parents[2]
SEED = 0
SEEDS = episode_seeds(SEED, 6)


def sokoban(*overrides: str) -> Any:
    return compose_config(["env=sokoban_easy", f"seed={SEED}", "progress=false", *overrides])


def on_ray(*overrides: str) -> Any:
    return sokoban("cluster=ray", *overrides)


def short_temp() -> str:
    return tempfile.mkdtemp(prefix="rock-ray-", dir="/tmp")  # Ray's socket paths under it must fit 107 bytes


def remove_temp(path: str) -> None:
    if path.startswith("/tmp/rock-ray-") and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A 2-CPU Ray head on 127.0.0.1 that this process is connected to (the caller's session)."""
    saved = {k: os.environ.get(k) for k in (LOOPBACK_ENV_VAR, "RAY_TMPDIR")}
    temp = short_temp()
    os.environ[LOOPBACK_ENV_VAR] = "0"  # before Ray is imported: every Ray server on 127.0.0.1
    os.environ["RAY_TMPDIR"] = temp
    import ray

    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp + "/r")
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remove_temp(temp)


def test_worker_count() -> None:
    def cluster(**kw: Any) -> RayClusterConfig:
        return RayClusterConfig(**kw)

    assert worker_count(cluster(), 100, [2.0, 4.0]) == 6
    assert worker_count(cluster(), 3, [2.0, 4.0]) == 3  # never more actors than episodes
    assert worker_count(cluster(cpus_per_worker=1.5), 100, [2.0, 4.0]) == 3
    assert worker_count(cluster(workers=2), 100, [2.0, 4.0]) == 2
    with pytest.raises(ConfigError, match=r"cluster.workers=7 .*\(room for 6\)"):
        worker_count(cluster(workers=7), 100, [2.0, 4.0])
    with pytest.raises(ConfigError, match="no Ray node has 8 CPUs"):
        worker_count(cluster(cpus_per_worker=8), 100, [2.0, 4.0])


def test_num_envs_with_ray_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set cluster\.workers=3 instead"):
        run_rollout(on_ray("num_envs=3"), tmp_path)


def test_missing_ray_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'rock-env\[ray\]'"):
        run_rollout(on_ray("episodes=2"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


@pytest.mark.ray
def test_a_slow_episode_holds_back_at_most_the_reorder_window(
    ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Episode 0 is slow: the other actor runs ahead only ``window`` episodes, and the bytes match local."""
    monkeypatch.setattr(ray_runner, "REORDER_WINDOW_PER_WORKER", 2)  # window = 2 x 2 actors = 4
    peaks: list[int] = []
    original = ray_runner.Scheduler.run

    def run(self: Any, emit: Any) -> None:
        try:
            original(self, emit)
        finally:
            peaks.append(self.peak_buffered)

    monkeypatch.setattr(ray_runner.Scheduler, "run", run)
    slow = ["policy=scripted", "policy.target=tests.rollout.helpers:RandomSlowOn", "episodes=12"]
    slow += [f"+policy.kwargs.seed={episode_seeds(SEED, 12)[0]}", "+policy.kwargs.delay=3.0"]
    run_rollout(on_ray(*slow, "cluster.workers=2"), tmp_path / "ray")
    run_rollout(sokoban(*slow[:-1], "+policy.kwargs.delay=0.0", "num_envs=1"), tmp_path / "local")
    assert dict(files_of(tmp_path / "ray")) == dict(files_of(tmp_path / "local"))
    # Episodes 1-3 finished and waited, episode 4 was not started, then episode 0 came in: the window, no more.
    assert peaks == [4]


@pytest.mark.ray
@pytest.mark.parametrize("policy", [["policy=random"], ["policy=scripted"]])
def test_two_actors_write_the_same_bytes_as_one_local_env(ray_session: Any, policy: list[str], tmp_path: Path) -> None:
    episodes = "episodes=6" if policy == ["policy=random"] else "episodes=4"
    local = run_rollout(sokoban(*policy, episodes, "num_envs=1"), tmp_path / "local")
    seen: list[int] = []
    result = run_rollout(
        on_ray(*policy, episodes, "cluster.workers=2"), tmp_path / "ray", on_episode=lambda ep: seen.append(ep.episode)
    )
    assert dict(files_of(tmp_path / "ray")) == dict(files_of(tmp_path / "local"))
    assert seen == list(range(len(local.episodes)))  # on_episode in episode order
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert (summary["status"], summary["cluster"], summary["workers"]) == ("ok", "ray", 2)
    assert summary["total_steps"] == result.total_steps == local.total_steps
    assert ray_session.is_initialized()  # the caller's session is left open


@pytest.mark.ray
def test_an_actor_that_dies_mid_episode_is_replaced_and_the_episode_rerun(ray_session: Any, tmp_path: Path) -> None:
    marker = tmp_path / "died"
    dies = ["policy=scripted", "policy.target=tests.rollout.helpers:RandomThatDies"]
    dies += [f"+policy.kwargs.seed={SEEDS[2]}", f"+policy.kwargs.marker={marker}"]
    run_rollout(on_ray(*dies, "episodes=6", "cluster.workers=2"), tmp_path / "ray")
    assert marker.exists(), "the policy should have ended its actor once"
    assert int(marker.read_text()) != os.getpid()
    run_rollout(sokoban("policy=random", "episodes=6"), tmp_path / "local")
    assert dict(files_of(tmp_path / "ray")) == dict(files_of(tmp_path / "local"))


@pytest.mark.ray
def test_an_episode_that_keeps_killing_its_actor_fails_the_run(ray_session: Any, tmp_path: Path) -> None:
    dies = ["policy=scripted", "policy.target=tests.rollout.helpers:RandomThatDies", f"+policy.kwargs.seed={SEEDS[1]}"]
    with pytest.raises(WorkerLost, match=r"episode 1 .* lost its Ray actor 2 times.*cluster.max_retries \(now 1\)"):
        run_rollout(on_ray(*dies, "episodes=6", "cluster.workers=2", "cluster.max_retries=1"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "WorkerLost" in summary["error"]
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert 1 not in [e["episode"] for e in episodes]


@pytest.mark.ray
def test_a_policy_error_fails_the_run_and_keeps_finished_episodes(ray_session: Any, tmp_path: Path) -> None:
    fails = [
        "policy=scripted",
        "policy.target=tests.rollout.helpers:RandomThatFails",
        f"+policy.kwargs.seed={SEEDS[3]}",
    ]
    with pytest.raises(ServerUnavailable, match="scripted outage"):  # the original error, not Ray's wrapper
        run_rollout(on_ray(*fails, "episodes=6", "cluster.workers=2"), tmp_path)
    episodes = read_jsonl(tmp_path / "episodes.jsonl")  # valid JSONL
    indices = [e["episode"] for e in episodes]
    # episode 3 starts once two of 0-2 are done (2 actors); what else finished is written in episode order
    assert len(indices) >= 2 and indices == sorted(indices) and 3 not in indices
    assert [r for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "episode"] == episodes
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "ServerUnavailable" in summary["error"]
    assert summary["episodes"] == len(episodes)


@pytest.mark.ray
def test_another_address_than_the_sessions_is_a_clear_error(ray_session: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already connected to the Ray cluster"):
        run_rollout(on_ray("cluster.address=127.0.0.1:1", "episodes=1"), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"use cluster\.address=auto"):
        run_rollout(on_ray("cluster.address=local", "episodes=1"), tmp_path / "b")


def subprocess_env(ray_tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO)}


def ray_processes_using(path: str) -> list[int]:
    """PIDs of running processes whose command line mentions ``path``."""
    return pids_with_cmdline(path)


_LOCAL_HEAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from rock_env.config import compose_config
    from rock_env.rollout import run_rollout
    from rock_env.cluster.leftovers import ray_descendants

    seen = {}
    def look(ep):
        for ref in ray_descendants():
            seen[(ref.pid, ref.start_time)] = ref
    cfg = compose_config(["env=sokoban_easy", "episodes=3", "progress=false", "cluster=ray", "cluster.address=local"])
    run_rollout(cfg, sys.argv[1], on_episode=look)
    print(json.dumps({"seen": len(seen), "alive": [r.role for r in seen.values() if r.alive()]}))
    """
)


@pytest.mark.ray
def test_a_private_head_leaves_no_ray_process(tmp_path: Path) -> None:
    ray_tmp = short_temp()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOCAL_HEAD_SCRIPT, str(tmp_path / "out")],
            env=subprocess_env(ray_tmp),
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report["seen"] >= 3  # gcs_server, raylet, the actor, ...
        assert report["alive"] == []
        assert os.listdir(ray_tmp) == []  # the run's private temp dir is gone
        assert ray_processes_using(ray_tmp) == []
        assert len(read_jsonl(tmp_path / "out" / "episodes.jsonl")) == 3
    finally:
        remove_temp(ray_tmp)


@pytest.mark.ray
def test_cli_rollout_on_a_private_ray_head(tmp_path: Path) -> None:
    ray_tmp = short_temp()
    args = ["env=sokoban_easy", "policy=scripted", "episodes=4", "seed=5", "progress=false"]
    try:
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "rock-env"),
                "rollout",
                *args,
                "cluster=ray",
                "cluster.address=local",
                f"output_dir={tmp_path / 'ray'}",
                f"hydra.run.dir={tmp_path / 'hydra'}",
            ],
            env=subprocess_env(ray_tmp),
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ray_processes_using(ray_tmp) == [] and os.listdir(ray_tmp) == []
    finally:
        remove_temp(ray_tmp)
    run_rollout(compose_config([*args, f"output_dir={tmp_path / 'local'}"]), tmp_path / "local")
    assert dict(files_of(tmp_path / "ray")) == dict(files_of(tmp_path / "local"))
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert (summary["status"], summary["cluster"], summary["episodes"]) == ("ok", "ray", 4)
    assert all(e["success"] for e in read_jsonl(tmp_path / "ray" / "episodes.jsonl"))
    assert validate_rollout_config(summary["config"]).cluster == RayClusterConfig(address="local")


@pytest.mark.ray
@pytest.mark.server
def test_actors_play_remote_envs(ray_session: Any, tmp_path: Path) -> None:
    from rock_env.server.app import create_app
    from rock_env.server.runner import BackgroundServer
    from rock_env.server.settings import ServerSettings

    server = BackgroundServer(create_app(ServerSettings(data_dir=str(tmp_path / "admin")))).start()
    try:
        remote = ["backend=remote", f"backend.base_url={server.url}", "policy=scripted", "episodes=4"]
        run_rollout(on_ray(*remote, "cluster.workers=2"), tmp_path / "ray")
    finally:
        server.stop()
    run_rollout(sokoban("policy=scripted", "episodes=4"), tmp_path / "local")
    assert dict(files_of(tmp_path / "ray")) == dict(files_of(tmp_path / "local"))
