"""A tiny OpenAI-compatible chat completions server on 127.0.0.1 for the policy tests.

It serves ``POST /v1/chat/completions`` from a thread (``http.server``), records every request
body, and answers with what a *script* function returns for the request: a string (the
assistant's text), a dict (the assistant message, e.g. with ``tool_calls``), or an int
(an HTTP error status). Port 0 is bound, so tests can run in parallel.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | dict[str, Any] | int
Script = Callable[[dict[str, Any]], Reply]


class FakeOpenAI:
    """The fake server; use as a context manager (``url`` is the ``base_url`` ending in ``/v1``)."""

    def __init__(self, script: Script, *, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # silence the default logging
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with owner._lock:
                    owner.requests.append(body)
                    owner.headers.append(dict(self.headers))
                if owner.delay:
                    threading.Event().wait(owner.delay)
                reply = owner.script(body)
                if isinstance(reply, int):
                    self._send(reply, {"error": {"message": f"scripted HTTP {reply}"}})
                    return
                message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
                answer = {
                    "id": f"chatcmpl-{len(owner.requests)}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                }
                self._send(200, answer)

            def _send(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def last_user_text(request: dict[str, Any]) -> str:
    """The content of the last user or tool message of a request."""
    for message in reversed(request["messages"]):
        if message["role"] in {"user", "tool"}:
            return str(message.get("content") or "")
    return ""


def dead_url() -> str:
    """A loopback URL where nothing listens (a port bound and released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
