"""A server never hands out the host: no runtime="local", no host paths, no client-named code.

Every test talks to a real uvicorn server with the real clients (``rock.make(backend="remote")``,
``rock.Sandbox(base_url=...)``, httpx) and checks the status, the error class, that the message
names the setting that would allow the request, and that nothing was created on a refusal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.errors import ConfigError, PolicyViolation
from rock_env.server.app import create_app
from rock_env.server.config import admin_settings, compose, worker_settings
from rock_env.server.policy import ServerPolicy, is_file_key, looks_like_path
from rock_env.server.runner import BackgroundServer
from rock_env.server.service import Service
from rock_env.server.settings import ServerSettings
from tests.server.conftest import serve

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

BASH = "tool:Bash-v0"
CODE = "code:Python-v0"
ENABLE = "worker.allow_local_runtime=true"


def service(srv: BackgroundServer) -> Service:
    svc: Service = srv.app.state.service
    return svc


def assert_nothing_made(srv: BackgroundServer) -> None:
    """No record, no hosted object, nothing counted by health."""
    svc = service(srv)
    assert [r for r in svc.records.values() if r.status == "live"] == []
    assert svc.worker is not None and svc.worker.object_ids() == []
    health = httpx.get(srv.url + "/api/v1/health", timeout=60).json()
    assert health["envs"] == 0 and health["sandboxes"] == 0


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A server with the default settings: no local runtime, no data directories."""
    srv = serve(tmp_path_factory.mktemp("policy"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    problem = {"task_id": "double", "prompt": "Write double(x).", "tests": ["assert double(2) == 4"]}
    (root / "problems.jsonl").write_text(json.dumps(problem | {"entry_point": "double"}) + "\n")
    (root / "escape.jsonl").symlink_to("/etc/passwd")
    return root


@pytest.fixture(scope="module")
def serving_server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BackgroundServer]:
    """A server that serves ``data_dir`` to its clients."""
    srv = serve(tmp_path_factory.mktemp("serving"), data_dirs=[str(data_dir)])
    yield srv
    srv.stop()


def no_isolation_server(tmp: Path, **settings: Any) -> BackgroundServer:
    """A server whose worker has neither bubblewrap nor Docker (as on a host without them)."""
    app = create_app(ServerSettings(data_dir=str(tmp), **settings))
    entry = app.state.service.workers["embedded"]
    entry.capacity.runtimes = ["local"] if settings.get("allow_local_runtime") else []
    return BackgroundServer(app).start()


# --- runtime="local" -------------------------------------------------------------------------


def test_sandbox_api_refuses_local(default_server: BackgroundServer) -> None:
    with pytest.raises(PolicyViolation, match=r"worker\.allow_local_runtime=true") as refused:
        rock.Sandbox(runtime="local", base_url=default_server.url).start()
    assert "host access" in str(refused.value)
    resp = httpx.post(default_server.url + "/api/v1/sandboxes", json={"config": {"runtime": "local"}}, timeout=60)
    assert resp.status_code == 403
    assert resp.json()["error"] == "PolicyViolation" and "worker.allow_local_runtime" in resp.json()["message"]
    assert_nothing_made(default_server)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"runtime": "local"},
        {"sandbox": {"runtime": "local"}},
        {"sandbox": {"runtime": "namespace"}, "runtime": "local"},
    ],
    ids=["runtime", "sandbox-dict", "runtime-overrides-sandbox"],
)
def test_env_kwargs_refuse_local(default_server: BackgroundServer, kwargs: dict[str, Any]) -> None:
    with pytest.raises(PolicyViolation, match=r"worker\.allow_local_runtime=true"):
        rock.make(BASH, backend="remote", base_url=default_server.url, **kwargs)
    assert_nothing_made(default_server)


def test_vector_env_kwargs_refuse_local(default_server: BackgroundServer) -> None:
    with pytest.raises(PolicyViolation, match="allow_local_runtime"):
        rock.make_vec(BASH, 2, backend="remote", base_url=default_server.url, runtime="local")
    per_env = {"env_id": BASH, "num_envs": 2, "kwargs": {"env_kwargs": [{}, {"runtime": "local"}]}}
    resp = httpx.post(default_server.url + "/api/v1/vecs", json=per_env, timeout=60)
    assert resp.status_code == 403 and resp.json()["error"] == "PolicyViolation"
    assert_nothing_made(default_server)


def test_auto_resolves_to_an_isolating_runtime(default_server: BackgroundServer) -> None:
    env = rock.make(BASH, backend="remote", base_url=default_server.url)
    try:
        record = service(default_server).records[env.remote_id]
        assert record.request["kwargs"]["runtime"] == "namespace"  # made concrete on the server
        env.reset(seed=0)
        obs, *_ = env.step("<bash>echo in-sandbox</bash>")
        assert "in-sandbox" in obs
        hosted = service(default_server).worker._envs[env.remote_id].obj  # type: ignore[union-attr]
        assert hosted.runtime_name == "namespace"
    finally:
        env.close()
    with rock.Sandbox(base_url=default_server.url) as sb:  # runtime="auto"
        assert sb.runtime == "namespace"


def test_workers_do_not_advertise_local(default_server: BackgroundServer) -> None:
    runtimes = httpx.get(default_server.url + "/api/v1/workers", timeout=60).json()["workers"][0]["capacity"]
    assert "local" not in runtimes["runtimes"]


def test_auto_never_falls_back_to_local(tmp_path: Path) -> None:
    srv = no_isolation_server(tmp_path)
    try:
        with pytest.raises(PolicyViolation, match=r"runtime='auto' found no isolating runtime.*allow_local_runtime"):
            rock.Sandbox(base_url=srv.url).start()
        with pytest.raises(PolicyViolation, match="allow_local_runtime"):
            rock.make(BASH, backend="remote", base_url=srv.url)
        resp = httpx.post(srv.url + "/apis/v1/envs/gem/make", json={"env_id": BASH}, timeout=60)  # ROCK's route
        assert resp.status_code == 403 and resp.json()["error"] == "PolicyViolation"
        assert "allow_local_runtime" in resp.json()["message"]
        game = rock.make("game:Sokoban-v0-easy", backend="remote", base_url=srv.url)  # no sandbox: fine
        game.close()
        assert_nothing_made(srv)
    finally:
        srv.stop()


def test_allowing_local_hands_it_out(tmp_path: Path) -> None:
    srv = no_isolation_server(tmp_path, allow_local_runtime=True)
    try:
        with rock.Sandbox(base_url=srv.url) as sb:  # auto -> local, because the admin allowed it
            assert sb.runtime == "local"
            assert sb.run("echo on-the-host").output == "on-the-host\n"
        with rock.Sandbox(runtime="local", base_url=srv.url) as sb:
            assert sb.runtime == "local"
    finally:
        srv.stop()


def test_rock_compat_make_gets_an_isolated_env(default_server: BackgroundServer) -> None:
    made = httpx.post(default_server.url + "/apis/v1/envs/gem/make", json={"env_id": BASH}, timeout=60)
    assert made.status_code == 200, made.text
    env_id = made.json()["sandbox_id"]
    try:
        assert service(default_server).records[env_id].request["kwargs"]["runtime"] == "namespace"
    finally:
        httpx.post(default_server.url + "/apis/v1/envs/gem/close", json={"sandbox_id": env_id}, timeout=60)


# --- host paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        (CODE, {"dataset": "/etc/passwd"}),
        (CODE, {"dataset": "../../../../../../etc/passwd"}),
        (BASH, {"tasks": "/etc/shadow"}),
        (BASH, {"sandbox": {"image": "/"}}),
        (BASH, {"sandbox": {"image": "/usr"}}),
    ],
    ids=["dataset", "dataset-dotdot", "tasks", "image-root", "image-usr"],
)
def test_host_paths_are_refused(default_server: BackgroundServer, env_id: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(PolicyViolation, match=r"worker\.data_dirs") as refused:
        rock.make(env_id, backend="remote", base_url=default_server.url, **kwargs)
    assert "root:" not in str(refused.value)  # nothing of the file came back
    assert_nothing_made(default_server)


def test_no_file_is_opened_before_the_refusal(default_server: BackgroundServer, tmp_path: Path) -> None:
    fifo = tmp_path / "blocks-on-open"
    os.mkfifo(fifo)  # opening it for reading would hang the request
    resp = httpx.post(
        default_server.url + "/api/v1/envs", json={"env_id": CODE, "kwargs": {"dataset": str(fifo)}}, timeout=30
    )
    assert resp.status_code == 403 and resp.json()["error"] == "PolicyViolation"


def test_sandbox_api_refuses_a_host_rootfs(default_server: BackgroundServer) -> None:
    with pytest.raises(PolicyViolation, match=r"image='/'.*worker\.data_dirs"):
        rock.Sandbox(runtime="namespace", image="/", base_url=default_server.url).start()
    resp = httpx.post(default_server.url + "/api/v1/sandboxes", json={"config": {"image": "/etc/.."}}, timeout=60)
    assert resp.status_code == 403 and "worker.data_dirs" in resp.json()["message"]
    assert_nothing_made(default_server)


def test_image_names_are_not_paths(default_server: BackgroundServer) -> None:
    resp = httpx.post(
        default_server.url + "/api/v1/sandboxes",
        json={"config": {"runtime": "namespace", "image": "rock-env/base:no-such-suite"}},
        timeout=60,
    )
    assert resp.status_code == 404 and resp.json()["error"] == "ImageNotFound"  # looked up as a name, not refused


def test_served_data_dirs(serving_server: BackgroundServer, data_dir: Path) -> None:
    env = rock.make(CODE, backend="remote", base_url=serving_server.url, dataset=str(data_dir / "problems.jsonl"))
    env.close()
    with pytest.raises(PolicyViolation, match=r"resolves to '/etc/passwd'.*worker\.data_dirs"):
        rock.make(CODE, backend="remote", base_url=serving_server.url, dataset=str(data_dir / "escape.jsonl"))
    with pytest.raises(PolicyViolation, match=r"worker\.data_dirs"):
        rock.make(CODE, backend="remote", base_url=serving_server.url, dataset=f"{data_dir}/../../etc/passwd")


# --- code and other servers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"entry_point": "os:system"},
        {"sandbox": {"env": {}, "_target_": "os.system"}},
        {"tasks": [{"_target_": "subprocess.run", "_args_": [["id"]]}]},
    ],
    ids=["entry_point", "hydra-target", "nested-target"],
)
def test_client_named_code_is_refused(default_server: BackgroundServer, kwargs: dict[str, Any]) -> None:
    resp = httpx.post(default_server.url + "/api/v1/envs", json={"env_id": BASH, "kwargs": kwargs}, timeout=60)
    assert resp.status_code == 403 and resp.json()["error"] == "PolicyViolation"
    assert "never imports a module" in resp.json()["message"]
    assert_nothing_made(default_server)


def test_ids_are_looked_up_never_imported(default_server: BackgroundServer) -> None:
    for env_id in ["os:system", "rock_env.cli:main", "subprocess:run"]:
        resp = httpx.post(default_server.url + "/api/v1/envs", json={"env_id": env_id}, timeout=60)
        assert resp.status_code == 404 and resp.json()["error"] in ("EnvNotFound", "NamespaceNotFound"), resp.text
    resp = httpx.post(default_server.url + "/api/v1/envs", json={"env_id": "os.path:join()"}, timeout=60)
    assert resp.status_code == 422 and resp.json()["error"] == "InvalidEnvId"
    resp = httpx.post(default_server.url + "/api/v1/vecs", json={"env_id": "os:system", "num_envs": 1}, timeout=60)
    assert resp.status_code == 404
    assert_nothing_made(default_server)


def test_other_servers_are_refused(default_server: BackgroundServer) -> None:
    resp = httpx.post(
        default_server.url + "/api/v1/envs",
        json={"env_id": BASH, "kwargs": {"base_url": "http://169.254.169.254/", "token": "x"}},
        timeout=60,
    )
    assert resp.status_code == 403 and "base_url" in resp.json()["message"]


# --- settings -------------------------------------------------------------------------------


def test_settings_come_from_hydra() -> None:
    settings, _ = admin_settings(compose("serve_admin", [ENABLE, "worker.data_dirs=[/srv/rock-data]"]))
    assert settings.allow_local_runtime is True and settings.data_dirs == ["/srv/rock-data"]
    defaults, _ = admin_settings(compose("serve_admin", []))
    assert defaults.allow_local_runtime is False and defaults.data_dirs == []
    worker, _ = worker_settings(compose("serve_worker", ["worker.admin_url=http://127.0.0.1:1", ENABLE]))
    assert worker.allow_local_runtime is True


def test_a_local_default_runtime_needs_consent() -> None:
    with pytest.raises(ConfigError, match=r"allow_local_runtime=true"):
        admin_settings(compose("serve_admin", ["runtime=local"]))
    settings, _ = admin_settings(compose("serve_admin", ["runtime=local", ENABLE]))
    assert settings.runtime["runtime"] == "local"
    with pytest.raises(ConfigError, match="would serve the host"):
        admin_settings(compose("serve_admin", ["worker.data_dirs=[/]"]))


# --- the policy's own rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("/etc/passwd", True),
        ("~/.ssh/id_rsa", True),
        ("./x", True),
        ("a/../../b", True),
        ("rock-env/base:bookworm", False),
        ("bookworm", False),
        ("python:3.11-slim", False),
        ("", False),
    ],
)
def test_looks_like_path(value: str, path: bool) -> None:
    assert looks_like_path(value) is path


def test_file_keys() -> None:
    assert all(is_file_key(k) for k in ["dataset", "tasks", "image", "mounts", "data_path", "cache_dir", "FILE"])
    assert not any(is_file_key(k) for k in ["max_turns", "strict", "seed", "prompt"])


def test_policy_resolves_symlinks(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "ok.txt").write_text("x")
    (served / "out").symlink_to(tmp_path)
    policy = ServerPolicy(data_dirs=[str(served)])
    policy.check_host_path(str(served / "ok.txt"), "dataset")
    with pytest.raises(PolicyViolation):
        policy.check_host_path(str(served / "out" / "secret"), "dataset")
    with pytest.raises(PolicyViolation):
        policy.check_host_path(str(served) + "-sibling/x", "dataset")  # a prefix is not a parent
