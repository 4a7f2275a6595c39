"""A server never hands out the host: no ``runtime="local"``, no host paths, no unbounded clients.

Requests go to a real admin (a child process with an API token). A refused request is a 403
``PolicyViolation`` that names the setting; if a server ever accepted one, the object it made is
closed at once and never used (no command runs on the host).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rock_env.errors import QuotaExceeded
from tests.abuse.conftest import Arena, new_server, open_sandbox, target_params

pytestmark = [pytest.mark.abuse, pytest.mark.server]

NAMESPACE_SERVER = target_params(runtimes=("namespace",), vias=("server",))


def post(arena: Arena, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST as the arena's client; anything the server made is closed at once."""
    headers = {"authorization": f"Bearer {arena.token}"}
    response = httpx.post(arena.url + path, json=body, headers=headers, timeout=120)
    if response.status_code == 200:
        made = response.json().get("id")
        kind = path.rstrip("/").rsplit("/", 1)[-1]
        if made:
            httpx.delete(f"{arena.url}/api/v1/{kind}/{made}", headers=headers, timeout=120)
    return response


def refusal(response: httpx.Response) -> str:
    """``''`` if the response is a 403 PolicyViolation, else what it was."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 403 and body.get("error") == "PolicyViolation":
        return ""
    return f"{response.status_code} {body.get('error')}: {str(body.get('message') or response.text)[:200]}"


REQUESTS = {
    "sandbox runtime=local": ("/api/v1/sandboxes", {"config": {"runtime": "local"}}, "allow_local_runtime"),
    "env kwarg runtime=local": (
        "/api/v1/envs",
        {"env_id": "tool:Bash-v0", "kwargs": {"runtime": "local"}},
        "allow_local_runtime",
    ),
    "env kwarg sandbox={runtime: local}": (
        "/api/v1/envs",
        {"env_id": "tool:Bash-v0", "kwargs": {"sandbox": {"runtime": "local"}}},
        "allow_local_runtime",
    ),
    "vector env kwarg runtime=local": (
        "/api/v1/vecs",
        {"env_id": "tool:Bash-v0", "num_envs": 1, "kwargs": {"runtime": "local"}},
        "allow_local_runtime",
    ),
    "sandbox image=/": ("/api/v1/sandboxes", {"config": {"runtime": "namespace", "image": "/"}}, "data_dirs"),
    "sandbox image=/etc/..": (
        "/api/v1/sandboxes",
        {"config": {"runtime": "namespace", "image": "/etc/.."}},
        "data_dirs",
    ),
    "env kwarg dataset=/etc/passwd": (
        "/api/v1/envs",
        {"env_id": "code:Python-v0", "kwargs": {"dataset": "/etc/passwd"}},
        "data_dirs",
    ),
    "env kwarg sandbox={image: /}": (
        "/api/v1/envs",
        {"env_id": "tool:Bash-v0", "kwargs": {"sandbox": {"image": "/"}}},
        "data_dirs",
    ),
}


@pytest.mark.parametrize("target", NAMESPACE_SERVER, indirect=True)
def test_server_refuses_host_access(arena: Arena) -> None:
    """``runtime="local"`` (sandbox, env and vector-env kwargs) and host paths (``image=``, ``dataset=``) are
    refused with 403 PolicyViolation naming the setting that would allow them."""
    problems = []
    for name, (path, body, setting) in REQUESTS.items():
        response = post(arena, path, body)
        wrong = refusal(response)
        if wrong:
            problems.append(f"{name}: {wrong}")
        elif setting not in response.text:
            problems.append(f"{name}: the refusal does not name {setting}: {response.text[:200]}")
    assert not problems, "\n".join(problems)
    arena.finish()


@pytest.mark.parametrize("target", NAMESPACE_SERVER, indirect=True)
def test_per_token_sandbox_quota(arena: Arena) -> None:
    """With ``limits.max_sandboxes=2`` the third sandbox of a token is a 429 ``QuotaExceeded``; closing one frees it."""
    server = new_server(arena.scope, "quota", "limits.max_sandboxes=2").start()
    try:
        first = open_sandbox(arena.target, arena.scope, server)
        second = open_sandbox(arena.target, arena.scope, server)
        with pytest.raises(QuotaExceeded):
            open_sandbox(arena.target, arena.scope, server)
        first.stop()
        third = open_sandbox(arena.target, arena.scope, server)
        assert third.run("echo ok").output == "ok\n"
        for sb in (second, third):
            sb.stop()
    finally:
        server.stop()
    arena.finish()
