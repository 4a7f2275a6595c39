"""The host interface: a worker builds the spec its admin resolved; runtimes are offered only if their probe passes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rock_env.errors import EnvNotFound
from rock_env.protocol import OBJECT_ID_HEADER, EnvMakeRequest, exception_from_body
from rock_env.protocol.control import HOSTED_ENVS_PATH, HostedEnvMake
from rock_env.registry import registry
from rock_env.registry.spec import EnvSpec
from rock_env.server import capacity
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings, TokenSpec

pytestmark = pytest.mark.server

CLUSTER = "cluster-token-0123"
CLIENT = "client-token-4567"
#: Registered nowhere: only the spec the "admin" sends names its entry point.
UNREGISTERED = "test:NowhereRegistered-v0"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A worker process's app (role="worker") with a cluster token and a client token."""
    tokens = [TokenSpec(name="cluster", token=CLUSTER), TokenSpec(name="client", token=CLIENT)]
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("worker")), tokens=tokens)
    srv = BackgroundServer(create_app(settings, role="worker")).start()
    yield srv
    srv.stop()


def hosted_body(env_id: str = UNREGISTERED) -> dict[str, Any]:
    spec = EnvSpec(id=env_id, entry_point="tests.envs_for_tests:GuessEnv")
    return HostedEnvMake(request=EnvMakeRequest(env_id=env_id, seed=3), spec=spec.to_dict()).model_dump(mode="json")


def test_the_worker_builds_the_resolved_spec_without_looking_the_id_up(worker: BackgroundServer) -> None:
    with pytest.raises(EnvNotFound):
        registry.spec(UNREGISTERED)
    headers = {"authorization": f"Bearer {CLUSTER}", OBJECT_ID_HEADER: "env-from-admin"}
    with httpx.Client(base_url=worker.url, headers=headers, timeout=60) as http:
        made = http.post(HOSTED_ENVS_PATH, json=hosted_body())
        assert made.status_code == 200, made.text
        assert made.json()["id"] == "env-from-admin" and made.json()["env_id"] == UNREGISTERED
        reset = http.post("/api/v1/envs/env-from-admin/reset", json={"seed": 3})
        assert reset.status_code == 200, reset.text
        assert http.delete("/api/v1/envs/env-from-admin").status_code == 200
        # a client of the worker's public route still names ids only: this one is unknown there
        unknown = http.post("/api/v1/envs", json={"env_id": UNREGISTERED})
        assert unknown.status_code == 404 and isinstance(exception_from_body(unknown.json()), EnvNotFound)


def test_only_the_cluster_token_may_hand_a_worker_a_spec(worker: BackgroundServer) -> None:
    resp = httpx.post(
        worker.url + HOSTED_ENVS_PATH, json=hosted_body(), headers={"authorization": f"Bearer {CLIENT}"}, timeout=60
    )
    assert resp.status_code == 403 and resp.json()["error"] == "Forbidden"


def test_an_admin_takes_no_hosted_creations(tmp_path: Path) -> None:
    with BackgroundServer(create_app(ServerSettings(data_dir=str(tmp_path)))) as admin:
        resp = httpx.post(admin.url + HOSTED_ENVS_PATH, json=hosted_body(), timeout=60)
        assert resp.status_code == 422 and resp.json()["error"] == "RequestInvalid"
        assert HOSTED_ENVS_PATH not in httpx.get(admin.url + "/openapi.json", timeout=60).json()["paths"]


class _Probe:
    """A runtime class whose probe answers ``result`` (or raises it)."""

    def __init__(self, result: object) -> None:
        self.result = result

    def available(self) -> bool:
        if isinstance(self.result, Exception):
            raise self.result
        return bool(self.result)


def test_a_worker_offers_only_runtimes_whose_probe_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    import rock_env.sandbox.runtimes as runtimes

    probes = {"namespace": _Probe(False), "docker": _Probe(True)}
    monkeypatch.setattr(runtimes, "runtime_class", lambda name: probes[name])
    assert capacity.detect_runtimes() == ["docker"]
    assert capacity.detect_runtimes(allow_local=True) == ["docker", "local"]
    probes["docker"] = _Probe(RuntimeError("daemon gone"))
    probes["namespace"] = _Probe(True)
    assert capacity.detect_runtimes() == ["namespace"]
