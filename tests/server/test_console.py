"""The console's server side without a browser: loopback rule, token subprotocol, rates, history, attach protocol."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rock_env.server.app import create_app
from rock_env.server.console_auth import token_from_subprotocols, token_subprotocol
from rock_env.server.console_history import KEPT_STEPS, EnvHistories, VecHistories
from rock_env.server.console_stats import parse_totals, rates
from rock_env.server.metrics import Metrics
from rock_env.server.routes.console import is_loopback
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings


def test_token_subprotocol_round_trip() -> None:
    for token in ["plain-token-123", "with/slash+plus=eq", "ünïcode-tøken"]:
        sub = token_subprotocol(token)
        assert sub.startswith("bearer.") and "=" not in sub and "/" not in sub and "+" not in sub
        assert token_from_subprotocols(["rock-env", sub]) == token
    assert token_from_subprotocols(["rock-env"]) is None
    assert token_from_subprotocols(["bearer.%%%"]) == ""  # not base64url: a wrong token, refused as such


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("10.0.0.5", False), ("", False), (None, False)],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_rates_come_from_the_metrics_text() -> None:
    metrics = Metrics()
    before = parse_totals(metrics.render(), now=100.0)
    for _ in range(10):
        metrics.inc("env_steps_total", "steps")
        metrics.observe("op_seconds", "latency", 0.002, op="env_step")
    metrics.observe("op_seconds", "latency", 1.0, op="sandbox_create")
    metrics.inc("errors_total", "errors", type="InvalidAction")
    after = parse_totals(metrics.render(), now=102.0)
    point = rates(before, after)
    assert point.steps_per_s == pytest.approx(5.0)
    assert point.requests_per_s == pytest.approx(5.5)
    assert point.step_latency_ms == pytest.approx(2.0)  # the sandbox creation is not a step
    assert after.errors == {"InvalidAction": 1.0}


def test_env_history_keeps_the_last_steps() -> None:
    hist = EnvHistories()
    assert hist.get("e") is None
    hist.reset("e", "start")
    for i in range(KEPT_STEPS + 5):
        hist.stepped("e", f"a{i}", f"obs{i}", 1.0, False, i == KEPT_STEPS + 4)
    got = hist.get("e")
    assert got is not None
    assert got["step"] == KEPT_STEPS + 5 and got["episode_return"] == KEPT_STEPS + 5 and got["done"]
    assert len(got["steps"]) == KEPT_STEPS and got["steps"][-1]["action"] == f"a{KEPT_STEPS + 4}"
    hist.reset("e", "again")
    assert hist.get("e") == hist.get("e") and hist.get("e")["episode"] == 2 and not hist.get("e")["steps"]  # type: ignore[index]
    hist.forget("e")
    assert hist.get("e") is None


def test_vec_history_follows_each_sub_env() -> None:
    hist = VecHistories()
    hist.reset("v", ["a0", "b0"])
    hist.stepped("v", ["x", "y"], ["a1", "b1"], [1.0, 2.0], [False, True], [False, False])
    hist.stepped("v", ["x2", "y2"], ["a2", "b2"], [0.5, 3.0], [False, False], [False, False])
    first, second = hist.get("v", 0), hist.get("v", 1)
    assert first is not None and second is not None
    assert first["observation"] == "a2" and [s["action"] for s in first["steps"]] == ["x", "x2"]
    assert first["episode_return"] == 1.5 and not first["done"]
    assert second["episode_return"] == 3.0  # its episode ended at step 1; the new one has 3.0 so far
    assert hist.get("v", 5)["observation"] is None  # type: ignore[index]
    hist.forget("v")
    assert hist.get("v", 0) is None


@pytest.mark.server
async def test_without_token_only_loopback_clients(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=str(tmp_path)))
    for client, expected in ((("10.1.2.3", 5000), 403), (("127.0.0.1", 5000), 200)):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
            for path in ("/", "/console/app.js", "/api/v1/console/objects"):
                answer = await http.get(path)
                assert answer.status_code == expected, (client, path, answer.text)
                if expected == 403:
                    assert answer.json()["error"] == "Forbidden" and "loopback" in answer.json()["message"]


@pytest.mark.server
async def test_with_token_the_pages_load_and_the_data_needs_it(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=str(tmp_path), token="console-token-0123"))
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/console/vendor/xterm/xterm.js")).status_code == 200
        for escape in ("/console/%2e%2e/routes/console.py", "/console/..%2Froutes%2Fconsole.py", "/console/nope.js"):
            assert (await http.get(escape)).status_code == 404, escape
        assert (await http.get("/api/v1/console/objects")).status_code == 401
        ok = await http.get("/api/v1/console/objects", headers={"Authorization": "Bearer console-token-0123"})
        assert ok.status_code == 200 and ok.json() == {"envs": [], "vecs": [], "sandboxes": []}


# --- attach protocol over a real server and sandbox ------------------------------------------------


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("console")), runtime={"runtime": "namespace"})
    srv = BackgroundServer(create_app(settings)).start()
    yield srv
    srv.stop()


@pytest.mark.server
@pytest.mark.bwrap
def test_attach_watches_and_types_only_after_take_over(admin: BackgroundServer) -> None:
    import websockets

    http = httpx.Client(base_url=admin.url, timeout=60)
    sid = http.post("/api/v1/sandboxes", json={"config": {}}).json()["id"]
    try:
        http.post(f"/api/v1/sandboxes/{sid}/run", json={"cmd": "export MARK=agent"})
        url = admin.url.replace("http://", "ws://") + f"/api/v1/console/sandboxes/{sid}/attach"

        async def session() -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = []
            async with websockets.connect(url, subprotocols=["rock-env"]) as ws:  # type: ignore[list-item]
                hello = json.loads(await ws.recv())
                assert hello["event"] == "hello" and hello["recent"][-1]["cmd"] == "export MARK=agent"
                await ws.send(json.dumps({"type": "input", "line": "echo sneaky"}))
                refused = json.loads(await ws.recv())
                assert (
                    refused["event"] == "error"
                    and refused["error"] == "Forbidden"
                    and "take over" in refused["message"]
                )
                await ws.send("not json")
                assert json.loads(await ws.recv())["error"] == "RequestInvalid"
                await ws.send(json.dumps({"type": "takeover"}))
                assert json.loads(await ws.recv())["event"] == "takeover"
                await ws.send(json.dumps({"type": "input", "line": "echo console-$MARK"}))
                agent = threading.Thread(
                    target=lambda: http.post(f"/api/v1/sandboxes/{sid}/run", json={"cmd": "echo from-api"})
                )
                while len([e for e in events if e["event"] == "exit"]) < 2:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    events.append(event)
                    if event["event"] == "exit" and not agent.is_alive() and agent.ident is None:
                        agent.start()
                agent.join()
            return events

        events = asyncio.run(session())
        commands = [e for e in events if e["event"] == "command"]
        assert commands[0] == {"event": "command", "cmd": "echo console-$MARK", "by": "console"}
        assert commands[1] == {"event": "command", "cmd": "echo from-api"}
        text = "".join(e.get("text", "") for e in events if e["event"] == "output")
        assert text == "console-agent\nfrom-api\n"  # the same shell: the agent's variable is there
        assert "sneaky" not in text
        page = http.get(f"/api/v1/console/sandboxes/{sid}").json()
        assert [c["cmd"] for c in page["sessions"][0]["recent"]][-2:] == ["echo console-$MARK", "echo from-api"]
        from websockets.sync.client import connect

        with connect(url, subprotocols=["rock-env"], open_timeout=10) as ws:  # type: ignore[list-item]
            assert json.loads(ws.recv(timeout=10))["event"] == "hello"
            assert http.post(f"/api/v1/console/sandboxes/{sid}/stop").status_code == 200
            told = json.loads(ws.recv(timeout=10))
            assert told["event"] == "error" and told["error"] == "SandboxClosed"
        missing = http.get(admin.url + f"/api/v1/console/sandboxes/{sid}-nope")
        assert missing.status_code == 404 and missing.json()["error"] == "SandboxNotFound"
    finally:
        http.delete(f"/api/v1/sandboxes/{sid}")
        http.close()


@pytest.mark.server
@pytest.mark.bwrap
@pytest.mark.slow
def test_attach_and_env_page_through_a_remote_worker(tmp_path: Path) -> None:
    """The admin relays the attach socket to the worker that hosts the sandbox, and asks it for env histories."""
    from websockets.sync.client import connect

    from rock_env.server.heartbeat import run_heartbeat

    token = "cluster-token-0123"
    admin = BackgroundServer(
        create_app(ServerSettings(data_dir=str(tmp_path / "admin"), token=token, embedded_worker=False))
    ).start()
    worker = None
    try:
        worker_settings = ServerSettings(data_dir=str(tmp_path / "worker"), token=token, worker_id="w1")
        worker_app = create_app(worker_settings, role="worker")
        worker = BackgroundServer(worker_app)
        advertise = worker.url
        service = worker_app.state.service
        service.background.append(lambda: run_heartbeat(service, admin.url, advertise, token))
        worker.start()
        http = httpx.Client(base_url=admin.url, timeout=60, headers={"Authorization": f"Bearer {token}"})
        deadline = time.monotonic() + 45
        while not http.get("/api/v1/workers").json()["workers"]:
            assert time.monotonic() < deadline, "the worker did not register"
            time.sleep(0.2)
        made = http.post("/api/v1/sandboxes", json={"config": {"runtime": "namespace"}})
        assert made.status_code == 200, made.text
        sid = made.json()["id"]
        assert made.json()["worker_id"] == "w1"
        http.post(f"/api/v1/sandboxes/{sid}/run", json={"cmd": "echo first"})
        page = http.get(f"/api/v1/console/sandboxes/{sid}").json()
        assert page["sessions"][0]["recent"][-1]["cmd"] == "echo first"

        url = admin.url.replace("http://", "ws://") + f"/api/v1/console/sandboxes/{sid}/attach"
        with pytest.raises(Exception, match="401"):
            connect(url, subprotocols=["rock-env"], open_timeout=10)  # type: ignore[list-item]
        with connect(url, subprotocols=["rock-env", token_subprotocol(token)], open_timeout=20) as ws:  # type: ignore[list-item]
            assert json.loads(ws.recv(timeout=20))["recent"][-1]["cmd"] == "echo first"
            ws.send(json.dumps({"type": "takeover"}))
            assert json.loads(ws.recv(timeout=20))["event"] == "takeover"
            ws.send(json.dumps({"type": "input", "line": "echo via-relay"}))
            texts = []
            while True:
                event = json.loads(ws.recv(timeout=20))
                texts.append(event.get("text", ""))
                if event["event"] == "exit":
                    break
            assert "".join(texts) == "via-relay\n"

        made_env = http.post("/api/v1/envs", json={"env_id": "game:Sokoban-v0-easy"}).json()["id"]
        first = http.post(f"/api/v1/envs/{made_env}/reset", json={"seed": 2}).json()["observation"]
        assert http.get(f"/api/v1/console/envs/{made_env}").json()["history"]["observation"] == first
        http.post(f"/api/v1/envs/{made_env}/step", json={"action": "\\boxed{up}"})
        history = http.get(f"/api/v1/console/envs/{made_env}").json()["history"]
        assert history["step"] == 1 and history["steps"][0]["action"] == "\\boxed{up}"
        http.delete(f"/api/v1/envs/{made_env}")
        assert http.post(f"/api/v1/console/sandboxes/{sid}/stop").status_code == 200
        http.close()
    finally:
        if worker is not None:
            worker.stop()
        admin.stop()
