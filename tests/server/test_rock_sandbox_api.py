"""ROCK's sandbox routes on the wire: bad input, the image map, policy, quotas, sync start, startup_timeout.

The real client's runs are in ``test_rock_sandbox.py``; here requests are sent as raw HTTP to see
exactly what each route answers. Requests that do not match a route's schema get 422 in ROCK's
envelope; well-formed requests that fail get 200 with ``status: "Failed"`` (ROCK's SDK reads the
envelope); ``result.code`` is 4000 for both. Never a 5xx.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode

from rock_env.errors import ConfigError, ImageNotFound
from rock_env.server.config import admin_settings, compose
from rock_env.server.rock_image import IMAGE_MAP_SETTING, mapped_image, resolve_image
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import DEFAULT_ROCK_IMAGE_MAP
from tests.fuzzing import all_checks, failure_report, send_examples
from tests.server.conftest import serve

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

V1 = "/apis/envs/sandbox/v1"
#: Every JSON route and a well-formed body for it (``sandbox_id`` filled in by the tests).
POST_ROUTES: dict[str, dict[str, Any]] = {
    "stop": {},
    "delete": {},
    "execute": {"command": "true"},
    "create_session": {"session": "s"},
    "run_in_session": {"command": "true", "session": "s"},
    "close_session": {"session": "s"},
    "read_file": {"path": "/tmp/x"},
    "write_file": {"path": "/tmp/x", "content": "x"},
}
GET_ROUTES = ["get_status", "is_alive"]


@pytest.fixture(scope="module")
def rock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(
        tmp_path_factory.mktemp("rock-admin"),
        runtime={"runtime": "namespace"},
        limits={"max_sandboxes": 2},
        rock_image_map={**DEFAULT_ROCK_IMAGE_MAP, "mycorp/*": "rock-env/base:bookworm"},
    )
    yield srv
    srv.stop()


@pytest.fixture()
def client(rock_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rock_server.url + V1, timeout=120) as http:
        yield http


def failed(resp: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """Assert ROCK's failed envelope with HTTP ``status`` and code 4000 naming ``words``."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "Failed" and body["result"]["code"] == 4000, body
    for word in words:
        assert word in body["error"], body
    return body


def start(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"image": "python:3.11", "memory": "512m", "cpus": 1.0, **fields}
    resp = client.post("/start", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_malformed_bodies_and_wrong_types_are_422(client: httpx.Client) -> None:
    for route, good in POST_ROUTES.items():
        failed(client.post(f"/{route}", content=b"{not json"), 422, "Invalid JSON")
        failed(client.post(f"/{route}", content=b""), 422, "JSON object body")
        failed(client.post(f"/{route}", json=[1, 2]), 422)
        failed(client.post(f"/{route}", json={**good, "sandbox_id": 7}), 422, "sandbox_id")
        failed(client.post(f"/{route}", json=good), 422, "sandbox_id", "Field required")
    failed(client.post("/run_in_session", json={"sandbox_id": "x", "command": 5}), 422, "command")
    failed(client.post("/run_in_session", json={"sandbox_id": "x", "command": "true", "check": "loud"}), 422, "check")
    failed(client.post("/execute", json={"sandbox_id": "x", "command": "true", "timeout": "9"}), 422, "timeout")
    failed(client.post("/start_async", json={"image": ""}), 422, "image")
    failed(client.post("/start_async", json={"image": "python:3.11", "cpus": -1}), 422, "cpus")
    failed(client.post("/start", json={"image": "python:3.11", "memory": ["8g"]}), 422, "memory")
    for route in GET_ROUTES:
        failed(client.get(f"/{route}"), 422, "sandbox_id")
        failed(client.get(f"/{route}", params={"sandbox_id": ""}), 422, "sandbox_id")
    failed(client.post("/upload", json={"sandbox_id": "x"}), 422, "multipart")
    failed(client.post("/upload", data={"sandbox_id": "x", "target_path": "/tmp/a"}, files={}), 422)
    form = {"sandbox_id": "x", "target_path": "/tmp/a"}
    failed(client.post("/upload", data={"target_path": "/tmp/a"}, files={"file": b"x"}), 422, "sandbox_id")
    failed(client.post("/upload", data=form, files={"other": b"x"}), 422, "file")


def test_unknown_sandbox_ids_are_failed_with_code_4000(client: httpx.Client) -> None:
    for route, good in POST_ROUTES.items():
        failed(client.post(f"/{route}", json={**good, "sandbox_id": "sbx-nope"}), 200, "SandboxNotFound", "sbx-nope")
    for route in GET_ROUTES:
        failed(client.get(f"/{route}", params={"sandbox_id": "sbx-nope"}), 200, "SandboxNotFound")
    form = {"sandbox_id": "sbx-nope", "target_path": "/tmp/a"}
    failed(client.post("/upload", data=form, files={"file": b"x"}), 200, "SandboxNotFound")
    failed(client.get("/get_token"), 200, "OSS")


def test_images_resolve_through_the_map_and_refuse_what_is_neither_local_nor_mapped(
    client: httpx.Client, rock_server: BackgroundServer
) -> None:
    assert mapped_image("python:3.12-slim", DEFAULT_ROCK_IMAGE_MAP) == "rock-env/base:bookworm"
    assert mapped_image("ubuntu:22.04", DEFAULT_ROCK_IMAGE_MAP) == "rock-env/base:bookworm"
    assert mapped_image("alpine:3", DEFAULT_ROCK_IMAGE_MAP) is None
    assert resolve_image("rock-env/base:bookworm", "namespace", {}) == "rock-env/base:bookworm"  # present locally
    overrides = ['+server.rock_image_map=["mycorp/*=rock-env/base:bookworm","python:3.*=x:1"]']
    settings, _ = admin_settings(compose("serve_admin", overrides))
    assert settings.rock_image_map == {"mycorp/*": "rock-env/base:bookworm", "python:3.*": "x:1"}
    with pytest.raises(ConfigError, match="pattern=image"):
        admin_settings(compose("serve_admin", ['+server.rock_image_map=["no-equals-sign"]']))
    with pytest.raises(ImageNotFound, match=IMAGE_MAP_SETTING.replace(".", r"\.")):
        resolve_image("alpine:3", "namespace", DEFAULT_ROCK_IMAGE_MAP)

    failed(client.post("/start_async", json={"image": "alpine:3"}), 200, "ImageNotFound", IMAGE_MAP_SETTING)
    failed(client.post("/start_async", json={"image": "/etc"}), 200, "PolicyViolation", "worker.data_dirs")
    failed(client.post("/start_async", json={"image": "python:3.11", "num_gpus": 1.0}), 200, "GPU")
    failed(client.post("/start_async", json={"image": "python:3.11", "image_os": "windows"}), 200, "Linux")
    failed(client.post("/start_async", json={"image": "python:3.11", "memory": "lots"}), 200, "memory")
    failed(client.post("/start", json={"image": "python:3.11", "sandbox_id": "bad id!"}), 200, "sandbox_id")

    # the admin's own map entry; ROCK's memory/cpus/auto_clear become the sandbox's limits
    answer = start(client, image="mycorp/tool:1", memory="300m", cpus=0.5, auto_clear_time_minutes=2)
    assert answer["status"] == "Success", answer
    sid = answer["result"]["sandbox_id"]
    with httpx.Client(base_url=rock_server.url, timeout=60) as ours:
        placed = {s["id"]: s for s in ours.get("/api/v1/sandboxes").json()["sandboxes"]}[sid]
        config = placed["config"]
        assert (config["image"], config["memory"], config["cpus"], config["idle_ttl"]) == (
            "rock-env/base:bookworm",
            "300m",
            0.5,
            120.0,
        )
        assert placed["runtime"] == "namespace"
    status = client.get("/get_status", params={"sandbox_id": sid}).json()["result"]
    assert (status["image"], status["memory"], status["cpus"], status["is_alive"]) == (
        "mycorp/tool:1",
        "300m",
        0.5,
        True,
    )
    assert client.post("/stop", json={"sandbox_id": sid}).json()["status"] == "Success"


def test_quota_and_delete_of_a_running_sandbox(client: httpx.Client) -> None:
    ids = [start(client, sandbox_id=f"rock-quota-{i}")["result"]["sandbox_id"] for i in range(2)]
    try:
        assert ids == ["rock-quota-0", "rock-quota-1"]  # ROCK's own sandbox_id is kept
        failed(client.post("/start_async", json={"image": "python:3.11"}), 200, "QuotaExceeded", "max_sandboxes")
        failed(client.post("/start", json={"image": "python:3.11", "sandbox_id": ids[0]}), 200, "taken")
        failed(client.post("/delete", json={"sandbox_id": ids[0]}), 200, "stop it first")
    finally:
        for sid in ids:
            assert client.post("/stop", json={"sandbox_id": sid}).json()["status"] == "Success"
    assert client.post("/stop", json={"sandbox_id": ids[0]}).json()["status"] == "Success"  # stopped: idempotent
    assert client.post("/delete", json={"sandbox_id": ids[0]}).json()["status"] == "Success"
    failed(client.post("/delete", json={"sandbox_id": ids[0]}), 200, "SandboxNotFound")


def test_startup_timeout_is_reported_and_the_late_sandbox_stopped(
    client: httpx.Client, rock_server: BackgroundServer
) -> None:
    resp = client.post("/start_async", json={"image": "python:3.11", "memory": "512m", "startup_timeout": 0.001})
    sid = resp.json()["result"]["sandbox_id"]
    deadline = time.monotonic() + 60
    while True:
        status = client.get("/get_status", params={"sandbox_id": sid}).json()["result"]
        phase = status["status"]["sandbox_start"]
        assert status["is_alive"] is False and phase["status"] == "timeout", status
        with httpx.Client(base_url=rock_server.url, timeout=60) as ours:
            live = [s["id"] for s in ours.get("/api/v1/sandboxes").json()["sandboxes"]]
        if "startup_timeout" in phase["message"] and "stopped" in phase["message"] and sid not in live:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


# --- schemathesis over the ROCK routes ----------------------------------------------------------


def test_rock_routes_pass_schemathesis(rock_server: BackgroundServer) -> None:
    """Positive and negative generated requests to every ROCK route: all of schemathesis' checks, no 5xx.

    The sandbox id is a live sandbox (so commands, paths and sessions reach it) or made up.
    """
    checks = all_checks()
    failures: dict[str, list[str]] = collections.defaultdict(list)
    seen: collections.Counter[str] = collections.Counter()
    schema = schemathesis.openapi.from_url(rock_server.url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path.startswith(V1)]
    with httpx.Client(base_url=rock_server.url + V1, timeout=120) as http:
        sid = start(http, sandbox_id="rock-fuzz")["result"]["sandbox_id"]
        try:
            for operation in operations:
                if operation.path.endswith(("/start", "/start_async")):
                    passes = [(GenerationMode.NEGATIVE, 2)]
                else:
                    passes = [(GenerationMode.POSITIVE, 2), (GenerationMode.NEGATIVE, 2)]
                for mode, examples in passes:
                    fuzz(operation, mode, examples, rock_server.url, checks, failures, seen, sid)
        finally:
            http.post("/stop", json={"sandbox_id": sid})
    assert len(operations) == 14, [op.label for op in operations]
    assert set(seen) == {op.label for op in operations}
    assert not failures, failure_report(failures)


def fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    url: str,
    checks: list[Any],
    failures: dict[str, list[str]],
    seen: collections.Counter[str],
    sandbox_id: str,
) -> None:
    def check(case: schemathesis.Case) -> None:
        label = f"{case.method} {case.formatted_path} [{mode.value}]"
        seen[operation.label] += 1
        if mode is GenerationMode.POSITIVE:  # reach the live sandbox; keep generated commands short
            for fields in (case.body, case.query):
                if isinstance(fields, dict) and "sandbox_id" in fields:
                    fields["sandbox_id"] = sandbox_id
                if isinstance(fields, dict) and "timeout" in fields:
                    fields["timeout"] = 5
        try:
            response = case.call(base_url=url, timeout=60)
        except requests.RequestException as exc:
            failures["no answer"].append(f"{label}: {type(exc).__name__}: {exc}")
            return
        if response.status_code >= 500:
            failures["5xx"].append(f"{label} -> {response.status_code} {response.text[:200]!r}")
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                failures[type(failure).__name__].append(
                    f"{label} -> {response.status_code} {response.text[:200]!r}: {' '.join(str(failure).split())[:300]}"
                )

    send_examples(operation, mode, examples, {}, check)


def test_paths_exist(tmp_path: Path) -> None:
    """The routes ROCK's SDK calls are all served (a 404 here is what ROCK users saw before)."""
    from rock_env.server.routes.rock_sandbox import router

    paths = {route.path for route in router.routes}  # type: ignore[attr-defined]
    wanted = {"start", "start_async", "get_status", "is_alive", "stop", "delete", "create_session"}
    wanted |= {"run_in_session", "close_session", "execute", "read_file", "write_file", "upload", "get_token"}
    assert {f"{V1}/{name}" for name in wanted} <= paths


def test_stop_while_starting_stops_the_sandbox_when_it_is_up(
    client: httpx.Client, rock_server: BackgroundServer
) -> None:
    sid = client.post("/start_async", json={"image": "python:3.11", "memory": "512m"}).json()["result"]["sandbox_id"]
    assert client.post("/stop", json={"sandbox_id": sid}).json()["status"] == "Success"
    deadline = time.monotonic() + 60
    while True:
        status = client.get("/get_status", params={"sandbox_id": sid}).json()["result"]
        with httpx.Client(base_url=rock_server.url, timeout=60) as ours:
            live = [s["id"] for s in ours.get("/api/v1/sandboxes").json()["sandboxes"]]
        if status["state"] == "stopped" and sid not in live:
            break
        assert status["is_alive"] is False, status
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert client.post("/delete", json={"sandbox_id": sid}).json()["status"] == "Success"
