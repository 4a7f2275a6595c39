"""ApiClient: retries idempotent calls on 502/503/504 with backoff, never retries a POST that reached
the server, maps error bodies back to typed exceptions; both the sync and the async client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rock_env.errors import RemoteError, ServerUnavailable, WorkerLost
from rock_env.protocol import Ok
from rock_env.remote.client import ApiClient, AsyncApiClient
from rock_env.server.runner import BackgroundServer

pytestmark = pytest.mark.server


class Flaky:
    """A real ASGI app: the first ``failures`` requests to each path get a 503, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        key = f"{scope['method']} {scope['path']}"
        self.seen[key] = self.seen.get(key, 0) + 1
        if scope["path"] == "/lost":
            status, body = 410, b'{"error": "WorkerLost", "message": "worker w1 is gone", "status": 410}'
        elif self.seen[key] <= self.failures:
            status, body = 503, b"busy"
        else:
            status, body = 200, b'{"ok": true}'
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-length", str(len(body)).encode())]}
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture()
def flaky() -> Iterator[tuple[Flaky, BackgroundServer]]:
    app = Flaky(failures=2)
    srv = BackgroundServer(app).start()
    yield app, srv
    srv.stop()


def test_idempotent_calls_are_retried_and_posts_are_not(flaky: tuple[Flaky, BackgroundServer]) -> None:
    app, srv = flaky
    with ApiClient(srv.url, retries=3) as client:
        assert client.call("GET", "/thing", Ok) == Ok()
        assert app.seen["GET /thing"] == 3
        with pytest.raises(RemoteError, match="HTTP 503"):
            client.call("POST", "/make", Ok)
        assert app.seen["POST /make"] == 1
        assert client.call("POST", "/reset", Ok, idempotent=True) == Ok()
        with pytest.raises(WorkerLost, match="w1 is gone"):
            client.call("GET", "/lost", Ok)
        assert app.seen["GET /lost"] == 1  # a typed 4xx is final


def test_async_client_has_the_same_rules(flaky: tuple[Flaky, BackgroundServer]) -> None:
    app, srv = flaky

    async def main() -> None:
        async with AsyncApiClient(srv.url, retries=3) as client:
            assert await client.call("DELETE", "/thing", Ok) == Ok()
            with pytest.raises(RemoteError):
                await client.call("POST", "/make", Ok)

    asyncio.run(main())
    assert app.seen["DELETE /thing"] == 3 and app.seen["POST /make"] == 1


def test_nobody_listening_is_server_unavailable_after_retries() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ApiClient(f"http://127.0.0.1:{port}", retries=2) as client, pytest.raises(ServerUnavailable):
        client.call("POST", "/api/v1/envs", Ok)


def test_the_fast_path_follows_the_same_retry_rule(flaky: tuple[Flaky, BackgroundServer]) -> None:
    """``post_fast`` (env reset/step) retries a 503 only when told the call is idempotent, like ``send``."""
    app, srv = flaky
    with ApiClient(srv.url, retries=3) as client:
        with pytest.raises(RemoteError, match="HTTP 503 from POST /step"):
            client.post_fast("/step", Ok(), Ok)
        assert app.seen["POST /step"] == 1
        assert client.post_fast("/reset", Ok(), Ok, idempotent=True) == Ok()
        assert app.seen["POST /reset"] == 3
        with pytest.raises(WorkerLost, match="w1 is gone"):
            client.post_fast("/lost", Ok(), Ok, idempotent=True)
        assert app.seen["POST /lost"] == 1
    with ApiClient(srv.url, retries=1) as client:
        with pytest.raises(RemoteError, match="HTTP 503"):
            client.post_fast("/again", Ok(), Ok, idempotent=True)  # two 503s, one retry allowed
        assert app.seen["POST /again"] == 2


def test_the_retry_rule() -> None:
    """One rule: a request that never left is always retried; one that may have reached the
    server only when idempotent (transport failure, or 502/503/504); at most ``retries`` times."""
    import httpcore
    import httpx

    from rock_env.remote.client import RetryRule

    rule = RetryRule(retries=2)
    refused = httpcore.ConnectError("refused")
    reset = httpx.ReadError("reset by peer")
    assert rule.delay(0, idempotent=False, failure=refused) == 0.05
    assert rule.delay(1, idempotent=False, failure=httpx.ConnectTimeout("slow")) == 0.1
    assert rule.delay(2, idempotent=False, failure=refused) is None
    assert rule.delay(0, idempotent=False, failure=reset) is None
    assert rule.delay(0, idempotent=True, failure=reset) == 0.05
    assert rule.delay(0, idempotent=True, failure=None, status=503) == 0.05
    assert rule.delay(0, idempotent=True, failure=None, status=500) is None
    assert rule.delay(0, idempotent=False, failure=None, status=503) is None
    assert RetryRule(retries=10).delay(9, idempotent=True, failure=None, status=502) == 2.0
