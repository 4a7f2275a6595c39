"""Every bad input is a 4xx with the reason, over the wire as in the local SDK, and never reaches a session.

NUL bytes, bad env var names, non-finite or huge timeouts, out-of-range sizes, values of the
wrong JSON type, envs whose optional dependency is missing, and clients that disconnect
mid-request or mid-stream (no 500, no traceback in the server's log).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.errors import ConfigError, DependencyMissing, InvalidArgument, RockEnvError
from rock_env.registry import registry
from rock_env.remote import RemoteSandbox
from rock_env.server.runner import BackgroundServer
from tests.server.conftest import serve

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

NUL = "\x00"


class Recorder(logging.Handler):
    """Keeps the records of WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(tmp_path_factory.mktemp("validation"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sandbox(server: BackgroundServer) -> Iterator[RemoteSandbox]:
    with rock.Sandbox(runtime="namespace", base_url=server.url) as sb:
        assert isinstance(sb, RemoteSandbox)
        sb.create_session("s")
        yield sb


@pytest.fixture()
def server_log() -> Iterator[Recorder]:
    """Warnings and errors the server logs (ours and uvicorn's)."""
    recorder = Recorder()
    loggers = [logging.getLogger(name) for name in ("rock_env", "uvicorn.error", "uvicorn")]
    for logger in loggers:
        logger.addHandler(recorder)
    yield recorder
    for logger in loggers:
        logger.removeHandler(recorder)


def commands_run(sb: RemoteSandbox, session: str) -> int:
    return next(s.commands for s in sb.sessions() if s.name == session)


# (route under the sandbox, raw JSON body, what the message must say)
WIRE_CASES: list[tuple[str, str, str]] = [
    ("run", json.dumps({"cmd": f"echo a{NUL}b"}), "NUL byte"),
    ("run", json.dumps({"cmd": "echo", "session": f"s{NUL}"}), "NUL byte"),
    ("run", json.dumps({"cmd": "echo", "session": "a/b"}), "'/'"),
    ("run", json.dumps({"cmd": "echo", "timeout": 1e21}), "at most 604800 s"),
    ("run", '{"cmd": "echo", "timeout": Infinity}', "not a finite number"),
    ("run", '{"cmd": "echo", "timeout": NaN}', "not a finite number"),
    ("run", json.dumps({"cmd": "echo", "timeout": -1}), "timeout"),
    ("run", json.dumps({"cmd": "echo", "timeout": 0}), "timeout"),
    ("run", json.dumps({"cmd": "echo", "timeout": "5"}), "timeout"),
    ("exec", json.dumps({"cmd": ["echo", f"a{NUL}"]}), "cmd[1] contains a NUL byte"),
    ("exec", json.dumps({"cmd": "pwd", "cwd": f"/tmp{NUL}"}), "cwd contains a NUL byte"),
    ("exec", json.dumps({"cmd": "env", "env": {"A=B": "x"}}), "not a valid environment variable name"),
    ("exec", json.dumps({"cmd": "env", "env": {"1A": "x"}}), "not a valid environment variable name"),
    ("exec", json.dumps({"cmd": "env", "env": {"A": f"x{NUL}"}}), "NUL byte"),
    ("exec", json.dumps({"cmd": []}), "non-empty list"),
    ("exec", json.dumps({"cmd": "true", "timeout": 1e300}), "at most 604800 s"),
    ("stream", json.dumps({"cmd": "env", "env": {"A=B": "x"}}), "not a valid environment variable name"),
    ("stream", '{"cmd": "sleep 1", "timeout": Infinity}', "not a finite number"),
    ("processes", json.dumps({"cmd": f"sleep{NUL} 1"}), "NUL byte"),
    ("sessions", json.dumps({"name": f"x{NUL}"}), "NUL byte"),
    ("sessions", json.dumps({"name": "x", "env": {"X=1": "y"}}), "not a valid environment variable name"),
    ("interrupt", json.dumps({"session": f"{NUL}"}), "NUL byte"),
    ("restore", json.dumps({"snapshot_id": f"snap{NUL}"}), "NUL byte"),
]


@pytest.mark.parametrize(("route", "body", "reason"), WIRE_CASES)
def test_bad_input_is_a_422_and_never_reaches_the_session(
    server: BackgroundServer, sandbox: RemoteSandbox, route: str, body: str, reason: str
) -> None:
    before = commands_run(sandbox, "s")
    default_before = {s.name for s in sandbox.sessions()}
    resp = httpx.post(
        f"{server.url}/api/v1/sandboxes/{sandbox.id}/{route}",
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert resp.status_code == 422, resp.text
    data = resp.json()
    assert data["error"] in ("InvalidArgument", "RequestInvalid") and reason in data["message"], data
    assert commands_run(sandbox, "s") == before
    assert {s.name for s in sandbox.sessions()} == default_before  # no session was even opened
    assert sandbox.run("echo ok", session="s").output == "ok\n"  # and the session is in step


def test_bad_paths_in_the_file_api(server: BackgroundServer, sandbox: RemoteSandbox) -> None:
    for method, route in [("GET", "file"), ("GET", "dir"), ("PUT", "file"), ("GET", "archive")]:
        resp = httpx.request(
            method, f"{server.url}/api/v1/sandboxes/{sandbox.id}/{route}", params={"path": f"a{NUL}b"}, timeout=60
        )
        assert resp.status_code == 422 and "NUL" in resp.json()["message"], (route, resp.text)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"memory": 10**30}, "out of range"),
        ({"disk": "99999999t"}, "out of range"),
        ({"output_limit": 1 << 40}, "at most 1073741824"),
        ({"pids": 10**12}, "out of range"),
        ({"env": {"A=B": "1"}}, "not a valid environment variable name"),
        ({"env": {"A": f"1{NUL}"}}, "NUL byte"),
        ({"ttl": 1e21}, "too long"),
        ({"image": f"x{NUL}"}, "NUL"),
        ({"workdir": f"/w{NUL}"}, "NUL"),
        ({"labels": {"k": f"v{NUL}"}}, "NUL"),
    ],
)
def test_bad_sandbox_configs(server: BackgroundServer, config: dict[str, Any], reason: str) -> None:
    resp = httpx.post(server.url + "/api/v1/sandboxes", json={"config": {"runtime": "namespace", **config}}, timeout=60)
    assert resp.status_code == 422 and resp.json()["error"] == "ConfigError" and reason in resp.json()["message"]
    with pytest.raises(ConfigError, match=reason.replace("(", r"\(")):
        rock.Sandbox(runtime="namespace", **config)  # the local SDK refuses the same config the same way


def test_non_finite_numbers_in_env_requests(server: BackgroundServer) -> None:
    for body in (
        '{"env_id": "game:Sokoban-v0-easy", "idle_ttl": Infinity}',
        '{"env_id": "game:Sokoban-v0-easy", "num_envs": 1, "idle_ttl": 1e21}',
    ):
        route = "vecs" if "num_envs" in body else "envs"
        resp = httpx.post(f"{server.url}/api/v1/{route}", content=body, timeout=60)
        assert resp.status_code == 422 and "idle_ttl" in resp.json()["message"], resp.text
    repeated = {"env_id": "game:Sokoban-v0-easy", "num_envs": 1, "kwargs": {"mode": "async"}}
    resp = httpx.post(f"{server.url}/api/v1/vecs", json=repeated, timeout=60)
    assert resp.status_code == 422 and "fields of the request" in resp.json()["message"]
    assert httpx.get(server.url + "/api/v1/health", timeout=60).json()["envs"] == 0


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("run", (f"echo {NUL}",)),
        ("run", ("echo", None, float("inf"))),
        ("run", ("echo", None, 1e21)),
        ("exec", (["echo", NUL],)),
        ("exec", ("env", None, {"A=B": "x"})),
        ("exec", ("pwd", f"/{NUL}")),
        ("create_session", (f"a{NUL}",)),
        ("spawn", ("env", None, {"": "x"})),
        ("read_file", (f"x{NUL}",)),
        ("write_file", (f"x{NUL}", "data")),
    ],
)
def test_remote_and_local_sdk_refuse_alike(sandbox: RemoteSandbox, call: str, args: tuple[Any, ...]) -> None:
    with rock.Sandbox(runtime="namespace") as local:
        with pytest.raises(InvalidArgument) as here:
            getattr(local, call)(*args)
        with pytest.raises(InvalidArgument) as there:
            getattr(sandbox, call)(*args)
    assert type(here.value) is type(there.value) and str(here.value) == str(there.value)


def test_missing_optional_dependency_is_a_424(server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> None:
    rock.register("test:NeedsMissing-v1", "tests.server.missing_dependency_env:NeedsMissing", override=True)
    try:
        with pytest.raises(DependencyMissing, match="pip install rock-env-no-such-package-xyz"):
            rock.make("test:NeedsMissing-v1", backend="remote", base_url=server.url)
        # a GEM env whose optional module is missing (made missing here even where it is installed)
        monkeypatch.setitem(sys.modules, "datasets", None)
        monkeypatch.delitem(sys.modules, "gem.envs.code_env", raising=False)
        resp = httpx.post(server.url + "/api/v1/envs", json={"env_id": "code:CodeContest"}, timeout=60)
        assert resp.status_code == 424 and resp.json()["error"] == "DependencyMissing"
        assert "pip install datasets" in resp.json()["message"]
        assert httpx.get(server.url + "/api/v1/health", timeout=60).json()["envs"] == 0
    finally:
        registry.unregister("test:NeedsMissing-v1")


def _raw(server: BackgroundServer, data: bytes, read: bool = False) -> None:
    """Send ``data`` and hang up (after the first bytes of the answer if ``read``)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(data)
        if read:
            assert sock.recv(64)
        time.sleep(0.1)


def _post(path: str, body: bytes, length: int | None = None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def test_clients_that_hang_up_are_no_internal_errors(
    server: BackgroundServer, sandbox: RemoteSandbox, server_log: Recorder
) -> None:
    base = f"/api/v1/sandboxes/{sandbox.id}"
    _raw(server, _post(f"{base}/run", b'{"cmd": "ec', length=100))  # mid-body, parsed route
    _raw(server, _post("/api/v1/envs/env-x/step", b'{"act', length=100))  # mid-body, the hot path
    archive = f"PUT {base}/archive?path=up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
    _raw(server, archive + b"\x00" * 1000)  # mid-upload
    cmd = json.dumps({"cmd": "for i in $(seq 1 40); do echo $i; sleep 0.05; done"}).encode()
    _raw(server, _post(f"{base}/stream", cmd), read=True)  # mid-stream
    _raw(server, _post(f"{base}/run", json.dumps({"cmd": "sleep 0.5; echo done"}).encode()))  # mid-command
    time.sleep(1.5)
    assert sandbox.run("echo after").output == "after\n"
    problems = [r for r in server_log.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == [], [f"{r.name}: {r.getMessage()}" for r in problems]
    errors = httpx.get(server.url + "/metrics", timeout=60).text
    assert 'type="InternalError"' not in errors
    assert "rock_env_client_disconnects_total" in errors


def test_errors_keep_their_class_over_the_wire(sandbox: RemoteSandbox) -> None:
    with pytest.raises(RockEnvError) as refused:
        sandbox.exec("env", env={"BAD NAME": "x"})
    assert type(refused.value) is InvalidArgument and refused.value.http_status == 422
