"""Running an app under uvicorn: in the foreground (CLI) or in a background thread (tests, notebooks).

The listening socket is created here (``port=0`` picks a free port) with TCP_NODELAY set,
so small answers leave at once instead of waiting for Nagle/delayed ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

import uvicorn

from rock_env.errors import ConfigError, ServerUnavailable

logger = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free one) with TCP_NODELAY."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Is another server running there? "
            "Pick another port (server.port=... / worker.port=..., 0 for any free one)."
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


#: Environment variable choosing uvicorn's HTTP protocol: ``auto`` (default), ``httptools``, ``h11``,
#: or ``coalescing`` (:mod:`rock_env.server.http_protocol`: one write per response; opt-in).
HTTP_PROTOCOL_ENV_VAR = "ROCK_ENV_UVICORN_HTTP"


def http_protocol() -> Any:
    """What ``uvicorn.Config(http=...)`` gets, from ``$ROCK_ENV_UVICORN_HTTP`` (default ``"auto"``).

    ``coalescing`` sends each response in one write instead of two (half the TCP segments); in
    ``benchmarks/remote_env.py --compare-server`` it was within noise of stock httptools under
    200-client load, so it is opt-in. Without httptools installed it falls back to ``"auto"``.
    """
    choice = os.environ.get(HTTP_PROTOCOL_ENV_VAR, "").strip() or "auto"
    if choice != "coalescing":
        return choice
    try:
        from rock_env.server.http_protocol import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol


def uvicorn_config(app: Any, log_level: str = "warning", root_logging: bool = False) -> uvicorn.Config:
    """uvicorn settings we use everywhere (uvloop and httptools when installed).

    ``root_logging``: leave uvicorn's loggers to the root handlers (e.g. JSON lines) instead of
    installing its own text handlers.
    """
    extra: dict[str, Any] = {"log_config": None} if root_logging else {}
    extra["http"] = http_protocol()  # "auto" unless $ROCK_ENV_UVICORN_HTTP says otherwise
    return uvicorn.Config(
        app,
        log_level=log_level,
        **extra,
        access_log=False,
        timeout_keep_alive=75,
        lifespan="on",
        backlog=2048,
        ws_ping_interval=None,
    )


def serve_on(app: Any, sock: socket.socket, log_level: str = "info", root_logging: bool = False) -> None:
    """Serve on a bound socket until SIGINT/SIGTERM (the CLI)."""
    server = uvicorn.Server(uvicorn_config(app, log_level, root_logging))
    server.run(sockets=[sock])


class BackgroundServer:
    """An app served from a daemon thread; ``url`` once started; ``stop()`` shuts it down cleanly."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app = app
        self._sock = bind_socket(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(app, log_level))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving and wait until the app is ready."""
        self._thread = threading.Thread(target=self._run, name=f"rock-env-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise ServerUnavailable(f"server on {self.url} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerUnavailable(f"server on {self.url} did not start within {timeout:.0f}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down (runs the app's lifespan shutdown) and join the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def kill(self) -> None:
        """Stop answering at once without the lifespan shutdown (simulates a crash in tests)."""
        self._server.force_exit = True
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
