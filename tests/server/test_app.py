"""The admin's HTTP API: envs, batching, errors as typed JSON 4xx, limits, OpenAPI, metrics."""

from __future__ import annotations

import httpx
import pytest

from rock_env.errors import error_class
from rock_env.protocol import EnvStepResponse

pytestmark = pytest.mark.server

SOKOBAN = "game:Sokoban-v0-easy"


def make(http: httpx.Client, env_id: str = SOKOBAN, **extra: object) -> str:
    resp = http.post("/api/v1/envs", json={"env_id": env_id, **extra})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def assert_error(resp: httpx.Response, status: int, name: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == name
    assert body["status"] == status
    assert body["message"]
    return body  # type: ignore[no-any-return]


def test_health_and_openapi(http: httpx.Client) -> None:
    health = http.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["role"] == "admin" and health["workers"] == 1
    spec = http.get("/openapi.json").json()
    for path in [
        "/api/v1/envs",
        "/api/v1/envs/{env}/step",
        "/api/v1/batch/step",
        "/api/v1/vecs/{vec}/step",
        "/api/v1/sandboxes",
        "/api/v1/sandboxes/{sandbox}/run",
        "/api/v1/workers",
        "/apis/v1/envs/gem/step",
    ]:
        assert path in spec["paths"], path
    step_body = spec["paths"]["/api/v1/envs/{env}/step"]["post"]["requestBody"]["content"]["application/json"]
    assert step_body["schema"]["required"] == ["action"]


def test_env_lifecycle_over_http(http: httpx.Client) -> None:
    env = make(http)
    assert http.get(f"/api/v1/envs/{env}").json()["env_id"] == SOKOBAN
    reset = http.post(f"/api/v1/envs/{env}/reset", json={"seed": 7}).json()
    assert isinstance(reset["observation"], str) and reset["observation"]
    step = EnvStepResponse.model_validate(http.post(f"/api/v1/envs/{env}/step", json={"action": "\\boxed{up}"}).json())
    assert isinstance(step.reward, float)
    assert env in [e["id"] for e in http.get("/api/v1/envs").json()["envs"]]
    assert http.delete(f"/api/v1/envs/{env}").json() == {"ok": True}
    assert_error(http.post(f"/api/v1/envs/{env}/step", json={"action": "x"}), 404, "EnvInstanceNotFound")


def test_batch_step_reports_errors_per_env(http: httpx.Client) -> None:
    a, b = make(http), make(http)
    http.post(f"/api/v1/envs/{a}/reset", json={"seed": 1})
    http.post(f"/api/v1/envs/{b}/reset", json={"seed": 2})
    steps = [
        {"env": a, "action": "\\boxed{up}"},
        {"env": "env-missing", "action": "x"},
        {"env": b, "action": "\\boxed{left}"},
    ]
    results = http.post("/api/v1/batch/step", json={"steps": steps}).json()["results"]
    assert results[0]["result"]["observation"] and results[0]["error"] is None
    assert results[1]["error"]["error"] == "EnvInstanceNotFound" and results[1]["result"] is None
    assert results[2]["result"]["observation"]
    for env in (a, b):
        http.delete(f"/api/v1/envs/{env}")


def test_step_before_reset_is_reset_needed(http: httpx.Client) -> None:
    env = make(http)
    body = assert_error(http.post(f"/api/v1/envs/{env}/step", json={"action": "x"}), 409, "ResetNeeded")
    assert "reset" in str(body["message"])
    http.delete(f"/api/v1/envs/{env}")


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "name"),
    [
        ("POST", "/api/v1/envs", {"content": b"{not json", "headers": JSON}, 422, "RequestInvalid"),
        ("POST", "/api/v1/envs", {"json": {"env_id": 5}}, 422, "RequestInvalid"),
        ("POST", "/api/v1/envs", {"json": {"env_id": SOKOBAN, "typo": 1}}, 422, "RequestInvalid"),
        ("POST", "/api/v1/envs", {"json": {"env_id": "game:Sokoban-v0-eassy"}}, 404, "EnvNotFound"),
        ("POST", "/api/v1/envs", {"json": {"env_id": SOKOBAN, "kwargs": {"nope": 1}}}, 422, "InvalidEnvKwargs"),
        ("POST", "/api/v1/envs/env-x/step", {"content": b"[]", "headers": JSON}, 422, "RequestInvalid"),
        ("POST", "/api/v1/envs/env-x/step", {"json": {"action": "x"}}, 404, "EnvInstanceNotFound"),
        ("POST", "/api/v1/batch/step", {"json": {"steps": "x"}}, 422, "RequestInvalid"),
        ("GET", "/api/v1/nope", {}, 404, "NotFound"),
        ("PATCH", "/api/v1/envs", {}, 405, "MethodNotAllowed"),
        ("POST", "/api/v1/sandboxes/sbx-none/run", {"json": {"cmd": "ls"}}, 404, "SandboxNotFound"),
        ("POST", "/api/v1/sandboxes", {"json": {"config": {"memory": "lots"}}}, 422, None),
        ("POST", "/api/v1/sandboxes", {"json": {"config": {"runtime": "vmware"}}}, 422, None),
    ],
)
def test_bad_input_is_a_typed_4xx(
    http: httpx.Client, method: str, path: str, kwargs: dict[str, object], status: int, name: str | None
) -> None:
    resp = http.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert 400 <= resp.status_code < 500, resp.text
    body = resp.json()
    assert resp.status_code == status, body
    if name is not None:
        assert body["error"] == name
    assert error_class(body["error"]).http_status in (status, 500) or body["error"] in {"NotFound", "MethodNotAllowed"}


def test_oversized_and_chunked_bodies_are_413(tmp_path: object) -> None:
    from tests.server.conftest import serve

    srv = serve(tmp_path, max_body=1024)  # type: ignore[arg-type]
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            big = b'{"env_id": "' + b"a" * 4096 + b'"}'
            assert_error(http.post("/api/v1/envs", content=big, headers=JSON), 413, "PayloadTooLarge")

            def chunks():  # type: ignore[no-untyped-def]
                yield b'{"env_id": "'
                for _ in range(8):
                    yield b"a" * 512
                yield b'"}'

            resp = http.post("/api/v1/envs", content=chunks(), headers=JSON)
            assert_error(resp, 413, "PayloadTooLarge")
            resp = http.post("/api/v1/envs/env-x/step", content=chunks(), headers=JSON)
            assert_error(resp, 413, "PayloadTooLarge")
            assert http.get("/api/v1/health").status_code == 200
    finally:
        srv.stop()


def _read_response(sock: object) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)  # type: ignore[attr-defined]
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)  # type: ignore[attr-defined]
    return (head + b"\r\n\r\n" + body).decode()


def test_slow_client_gets_408_and_server_keeps_serving(tmp_path: object) -> None:
    import socket

    from tests.server.conftest import serve

    srv = serve(tmp_path, body_timeout=0.5)  # type: ignore[arg-type]
    request = b"POST /api/v1/envs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(request)
            answer = _read_response(sock)
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "RequestTimeout" in answer
        # a client that vanishes mid-body
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(request)
        assert httpx.get(srv.url + "/api/v1/health", timeout=60).status_code == 200
    finally:
        srv.stop()


def test_metrics_prometheus_text(http: httpx.Client) -> None:
    env = make(http)
    http.post(f"/api/v1/envs/{env}/reset", json={"seed": 0})
    http.post(f"/api/v1/envs/{env}/step", json={"action": "\\boxed{up}"})
    http.post("/api/v1/envs/env-missing/step", json={"action": "x"})
    text = http.get("/metrics").text
    assert "# TYPE rock_env_live_envs gauge" in text
    assert "rock_env_env_steps_total" in text
    assert 'rock_env_op_seconds_bucket{op="env_step",le="+Inf"}' in text
    assert 'rock_env_errors_total{type="EnvInstanceNotFound"}' in text
    live = [line for line in text.splitlines() if line.startswith("rock_env_live_envs ")]
    assert int(live[0].split()[1]) >= 1
    http.delete(f"/api/v1/envs/{env}")


def test_workers_list(http: httpx.Client) -> None:
    workers = http.get("/api/v1/workers").json()["workers"]
    assert workers[0]["embedded"] is True and workers[0]["status"] == "alive"
    # runtime="local" (host access) is not offered unless worker.allow_local_runtime=true
    assert "local" not in workers[0]["capacity"]["runtimes"]
    assert "namespace" in workers[0]["capacity"]["runtimes"]


def test_uploads_have_their_own_limit(tmp_path: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    import rock_env as rock
    from tests.server.conftest import serve

    srv = serve(tmp_path, max_body=4096, max_upload=1 << 20)  # type: ignore[arg-type]
    try:
        src = tmp_path_factory.mktemp("upload") / "big.bin"
        src.write_bytes(b"x" * 100_000)  # larger than max_body, smaller than max_upload
        with rock.Sandbox(runtime="namespace", base_url=srv.url) as sb:
            sb.upload(src, "big.bin")
            assert sb.exec("wc -c < big.bin").output.strip() == "100000"
            with pytest.raises(rock.errors.PayloadTooLarge, match=r"server\.max_body"):
                sb.write_file("small-route.bin", b"x" * 100_000)
    finally:
        srv.stop()
