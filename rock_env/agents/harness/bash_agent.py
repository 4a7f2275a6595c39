"""The built-in harness of the agent envs: a minimal tool-calling bash agent.

It runs INSIDE the sandbox with nothing but the image's Python standard library (``socket`` and
``json``; ``urllib`` only for an https URL); rock-env sends its source to ``python3 -I -c`` (and
imports it only to read :data:`TOOLS`). It talks to the model through ``$OPENAI_BASE_URL/chat/completions`` with ``$OPENAI_API_KEY``, as any harness
built on OpenAI's API would, and offers the model two tools in OpenAI function format:

* ``bash``: run a command with ``bash -c`` in the workspace (a fresh shell each time; stdout and
  stderr together, cut to a limit, and the exit code);
* ``submit``: the work is done (the harness exits 0).

It also stops (exit 0) when the model answers without a tool call. Its settings come as JSON in
``$ROCK_AGENT_CONFIG``: ``task`` (the user message), ``system``, ``max_turns``,
``command_timeout``, ``output_limit``, ``model`` and ``sampling`` (extra request fields); commands
run in the directory it starts in (the workspace).
Exit codes: 0 done, 2 turn limit, 3 the model call failed, 4 bad settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any

EXIT_DONE = 0
EXIT_TURNS = 2
EXIT_MODEL = 3
EXIT_CONFIG = 4

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": (
                "Run a bash command in the workspace (a fresh shell each call: use && or ; to chain, "
                "cd does not persist). Returns stdout and stderr together, and the exit code."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The bash command(s) to run."},
                    "timeout": {"type": "number", "description": "Seconds before the command is killed."},
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "submit",
            "description": "Call this when the task is done: it ends the episode and your work is checked.",
            "parameters": {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
        },
    },
]


def log(text: str) -> None:
    """One line of the harness's own log (its stdout, which the env shows the tail of)."""
    sys.stdout.write(text.rstrip("\n")[:400] + "\n")
    sys.stdout.flush()


def _dechunk(data: bytes) -> bytes:
    """The body of a ``transfer-encoding: chunked`` response."""
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def post(url: str, headers: dict[str, str], data: bytes, timeout: float) -> tuple[int, bytes]:
    """POST ``data``; ``(status, body)``. Plain HTTP over a socket (light to import); https through urllib."""
    if not url.startswith("http://"):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
    hostport, _, path = url[len("http://") :].partition("/")
    host, _, port = hostport.rpartition(":") if "]" not in hostport.rsplit(":", 1)[-1] else (hostport, "", "")
    if not host:
        host, port = hostport, ""
    lines = [f"POST /{path} HTTP/1.1", f"Host: {hostport}", f"Content-Length: {len(data)}", "Connection: close"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    with socket.create_connection((host.strip("[]"), int(port or 80)), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, _, header_text = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP response: {raw[:100]!r}")
    if b"transfer-encoding: chunked" in header_text.lower():
        body = _dechunk(body)
    return int(parts[1]), body


def chat(base_url: str, api_key: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST one chat-completions request; the assistant message, or raise RuntimeError."""
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + api_key}
    try:
        status, raw = post(base_url.rstrip("/") + "/chat/completions", headers, json.dumps(body).encode(), timeout)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {raw[:500].decode('utf-8', 'replace')}")
    try:
        message = json.loads(raw)["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RuntimeError(f"not a chat completion: {raw[:300].decode('utf-8', 'replace')}") from None
    if not isinstance(message, dict):
        raise RuntimeError("the completion's message is not an object")
    return message


def run_bash(command: str, timeout: float, limit: int, workdir: str) -> str:
    """Run ``command``; its output (cut to ``limit`` bytes) and a status line."""
    with tempfile.TemporaryFile() as out:
        # output to a file, not a pipe: a background process the command starts must not hold us
        proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-c", command],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
            status = f"[exit code: {code}]"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"[command timed out after {timeout:g} s and was killed]"
        size = out.tell()
        out.seek(0)
        data = out.read(limit)
    text = data.decode("utf-8", "replace")
    if size > limit:
        text += f"\n[output truncated: {limit} of {size} bytes shown]"
    if text and not text.endswith("\n"):
        text += "\n"
    return text + status


def tool_result(call: dict[str, Any], config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The ``tool`` message answering one call, and whether it was ``submit``."""
    function = call.get("function") or {}
    name = function.get("name")
    raw = function.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(args, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        content = f"error: the arguments of {name} are not a JSON object ({exc})"
        return {"role": "tool", "tool_call_id": call.get("id", ""), "content": content}, False
    if name == "submit":
        return {"role": "tool", "tool_call_id": call.get("id", ""), "content": "submitted"}, True
    if name != "bash":
        content = f"error: unknown tool {name!r}; use bash or submit"
    elif not isinstance(args.get("command"), str):
        content = "error: bash needs a string argument 'command'"
    else:
        limit = float(config["command_timeout"])
        wanted = args.get("timeout")
        timeout = min(float(wanted), limit) if isinstance(wanted, (int, float)) and wanted > 0 else limit
        log("bash: " + args["command"].replace("\n", " "))
        try:
            content = run_bash(args["command"], timeout, int(config["output_limit"]), config["workdir"])
        except OSError as exc:
            content = f"error: the command could not be run: {exc}"
    return {"role": "tool", "tool_call_id": call.get("id", ""), "content": content}, False


def main() -> int:
    """Run the agent loop; returns the exit code."""
    try:
        config = json.loads(os.environ["ROCK_AGENT_CONFIG"])
        base_url = os.environ["OPENAI_BASE_URL"]
    except (KeyError, ValueError) as exc:
        log(f"bad settings: {exc} (need ROCK_AGENT_CONFIG and OPENAI_BASE_URL)")
        return EXIT_CONFIG
    api_key = os.environ.get("OPENAI_API_KEY", "none")
    config.setdefault("max_turns", 30)
    config.setdefault("command_timeout", 30.0)
    config.setdefault("output_limit", 16384)
    config["workdir"] = os.getcwd()  # the harness starts in the workspace (its path differs on the local runtime)
    messages = []
    if config.get("system"):
        messages.append({"role": "system", "content": config["system"]})
    messages.append({"role": "user", "content": config.get("task", "")})
    http_timeout = float(config.get("http_timeout", 3600.0))
    for turn in range(int(config["max_turns"])):
        body = dict(config.get("sampling") or {})
        body.update({"model": config.get("model", "rock-env"), "messages": messages, "tools": TOOLS})
        try:
            message = chat(base_url, api_key, body, http_timeout)
        except RuntimeError as exc:
            log(f"model call failed at turn {turn}: {exc}")
            return EXIT_MODEL
        calls = message.get("tool_calls") or []
        kept = {"role": "assistant", "content": message.get("content")}
        if calls:
            kept["tool_calls"] = calls
        messages.append(kept)
        if not calls:
            log("the model answered without a tool call: done")
            return EXIT_DONE
        submitted = False
        for call in calls:
            result, is_submit = tool_result(call, config)
            messages.append(result)
            submitted = submitted or is_submit
        if submitted:
            log("submitted")
            return EXIT_DONE
    log(f"turn limit ({int(config['max_turns'])}) reached")
    return EXIT_TURNS


if __name__ == "__main__":
    sys.exit(main())
