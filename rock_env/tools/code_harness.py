"""The test harness that grades submitted Python code inside a sandbox (stdlib only).

This file is shipped to the sandbox as text and run with ``python3 -I -c <this source>``;
it is never imported on the host by the envs (importing it is harmless, though). It reads
one JSON request on stdin and prints one JSON report line on stdout.

Keeping the tests secret from the submitted code:

* The tests only ever exist in the memory of the *grader* process (they arrive on its
  stdin, which is then closed). They are never written to a file.
* The submitted code runs in a separate *candidate* process (started from this same
  source with the argument ``candidate``). The grader evaluates each test itself and calls
  the candidate's functions through a pipe: arguments and results cross it as plain data
  (tagged JSON: numbers, strings, lists, tuples, dicts, sets, bytes), so the candidate
  never sees a test expression or an expected value, and the grader never unpickles or
  executes anything the candidate sends.
* The grader makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), so a process
  without ``CAP_SYS_PTRACE`` (sandboxed code has none) cannot open its ``/proc/<pid>/mem``,
  ``environ`` or ``fd/0``. An audit hook in the candidate reports attempts to open the
  grader's ``/proc`` entries, which score 0 with a message that says so.

Limits on the candidate: a wall-clock limit per call (and for loading the code), an
address-space limit (``RLIMIT_AS``), a CPU-time limit, and an output cap (its stdout and
stderr go to a file capped with ``RLIMIT_FSIZE``). Breaking any of them scores 0.

Request fields: ``code``, ``kind`` (``"asserts"``: a list of test statements, MBPP style;
``"check"``: a HumanEval ``check(candidate)`` test with an ``entry_point``), ``tests``,
``test``, ``entry_point``, ``setup``, ``time_limit``, ``memory_mb``, ``output_limit``,
``harness`` (this source, to start the candidate process).
Report fields: ``status`` (``ok``, ``load_error``, ``timeout``, ``memory``, ``output``,
``crash``, ``forbidden``, ``harness_error``), ``passed``, ``total``, ``results`` (one
``{"ok", "error"}`` per test) and ``message``.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

MAX_REPLY = 64 << 20
MAX_DEPTH = 200
MAX_ITEMS = 1_000_000

# --- a safe codec for values crossing the pipe ---------------------------------------------


class Untransferable(TypeError):
    """A value that cannot cross the pipe (functions, class instances, ...)."""


def encode(value: Any, depth: int = 0) -> Any:
    """Plain data to JSON-ready tagged data; anything else raises :class:`Untransferable`."""
    if depth > MAX_DEPTH:
        raise Untransferable("value is nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"$x": repr(value)} if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"$t": [encode(v, depth + 1) for v in value]}
    if isinstance(value, (set, frozenset)):
        tag = "$s" if isinstance(value, set) else "$f"
        return {tag: [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"$d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, complex):
        return {"$c": [encode(value.real, depth + 1), encode(value.imag, depth + 1)]}
    if isinstance(value, range) or type(value).__name__ in ("generator", "map", "filter", "zip", "reversed"):
        items = []
        for i, item in enumerate(value):
            if i >= MAX_ITEMS:
                raise Untransferable("iterator yields too many items")
            items.append(encode(item, depth + 1))
        return items
    raise Untransferable(f"a value of type {type(value).__name__} cannot be passed between tests and code")


def decode(data: Any, depth: int = 0) -> Any:
    """The inverse of :func:`encode` (never executes anything)."""
    if depth > MAX_DEPTH:
        raise ValueError("value is nested too deeply")
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if isinstance(data, dict):
        if len(data) != 1:
            raise ValueError("malformed value")
        ((tag, body),) = data.items()
        if tag == "$t":
            return tuple(decode(v, depth + 1) for v in body)
        if tag == "$s":
            return {decode(v, depth + 1) for v in body}
        if tag == "$f":
            return frozenset(decode(v, depth + 1) for v in body)
        if tag == "$d":
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
        if tag == "$b":
            return base64.b64decode(body)
        if tag == "$c":
            return complex(decode(body[0], depth + 1), decode(body[1], depth + 1))
        if tag == "$x":
            return float(body)
        raise ValueError(f"unknown tag {tag!r}")
    return data


# --- the candidate process -----------------------------------------------------------------


def candidate_main(rfd: int, wfd: int, grader_pid: int) -> None:
    """Run the submitted code and answer calls from the grader."""
    reader = os.fdopen(rfd, "rb")
    writer = os.fdopen(wfd, "wb")
    proc_prefix = f"/proc/{grader_pid}/"

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        writer.write(json.dumps(obj).encode() + b"\n")
        writer.flush()

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if path.startswith(proc_prefix) or path.rstrip("/") == proc_prefix.rstrip("/"):
                reply({"forbidden": f"the code tried to open {path}, a file of the test harness process"})
                os._exit(3)

    sys.addaudithook(audit)
    namespace: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": builtins}
    for line in reader:
        request = json.loads(line)
        op = request.get("op")
        if op == "load":
            before = set(namespace)
            try:
                if request.get("setup"):
                    exec(compile(request["setup"], "<setup>", "exec"), namespace)
                    before = set(namespace)
                exec(compile(request["code"], "<submission>", "exec"), namespace)
            except BaseException as exc:
                reply({"ok": False, "exc_type": type(exc).__name__, "error": _short_tb(exc)})
                continue
            names = [k for k, v in namespace.items() if callable(v) and (k not in before) and not k.startswith("__")]
            reply({"ok": True, "names": names})
        elif op == "call":
            try:
                fn = namespace[request["name"]]
                args = decode(request["args"])
                kwargs = decode(request["kwargs"])
                result = encode(fn(*args, **kwargs))
            except BaseException as exc:
                reply({"ok": False, "exc_type": type(exc).__name__, "error": _short_tb(exc)})
                continue
            reply({"ok": True, "value": result})
        else:
            reply({"ok": False, "exc_type": "ProtocolError", "error": f"unknown op {op!r}"})


def _short_tb(exc: BaseException, limit: int = 2000) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if f.filename in ("<submission>", "<setup>")]
    if frames:
        f = frames[-1]
        text = f"line {f.lineno}: {text}"
    return text[:limit]


# --- the grader ----------------------------------------------------------------------------


class Violation(BaseException):
    """The candidate broke a limit; grading stops and scores 0."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CandidateError(Exception):
    """The candidate's function raised; the test that called it fails."""


def _candidate_exception(exc_type: str, message: str) -> BaseException:
    """The exception to raise in the tests for an exception of the code.

    A built-in exception type is kept (so that tests expecting, e.g., ``ValueError`` work);
    the raised object is also a :class:`CandidateError`.
    """
    cls = getattr(builtins, exc_type, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not Exception:
        try:
            return type(exc_type, (CandidateError, cls), {})(message)
        except TypeError:
            pass
    return CandidateError(message)


class Candidate:
    """The grader's handle on the candidate process."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.time_limit = float(request.get("time_limit", 5.0))
        self.memory = int(request.get("memory_mb", 512)) << 20
        self.output_limit = int(request.get("output_limit", 1 << 20))
        self.tmpdir = tempfile.mkdtemp(prefix="grade-")
        self.out_path = os.path.join(self.tmpdir, "output.txt")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        cpu = int(self.time_limit * 4 + 5)
        memory, out_limit = self.memory, self.output_limit

        def limits() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_FSIZE, (out_limit, out_limit))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    request["harness"],
                    "candidate",
                    str(to_child_r),
                    str(from_child_w),
                    str(os.getpid()),
                ],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                preexec_fn=limits,
                start_new_session=True,
            )
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait (with the time limit) for the reply."""
        try:
            os.write(self.to_child, json.dumps(obj).encode() + b"\n")
        except (BrokenPipeError, OSError):
            self._raise_dead()
        deadline = time.monotonic() + self.time_limit
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._check_output()
                raise Violation("timeout", f"time limit exceeded: a call ran longer than {self.time_limit:g} s")
            ready, _, _ = select.select([self.from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                self._raise_dead()
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY:
                raise Violation("output", "a function returned a value larger than 64 MiB")
        line, _, self.buffer = self.buffer.partition(b"\n")
        reply = json.loads(line)
        if "forbidden" in reply:
            raise Violation("forbidden", f"reading the tests is not allowed: {reply['forbidden']}")
        self._check_output()
        if not reply.get("ok") and reply.get("exc_type") == "MemoryError":
            raise Violation("memory", f"memory limit exceeded ({self.memory >> 20} MiB)")
        return reply  # type: ignore[no-any-return]

    def _check_output(self) -> None:
        try:
            size = os.path.getsize(self.out_path)
        except OSError:
            return
        if size >= self.output_limit:
            raise Violation("output", f"output limit exceeded: the code printed {self.output_limit} bytes or more")

    def _raise_dead(self) -> None:
        code = self.proc.wait()
        self._check_output()
        if code == 3:
            raise Violation("forbidden", "reading the tests is not allowed")
        if code < 0:
            sig = -code
            if sig == signal.SIGXCPU:
                raise Violation("timeout", "CPU time limit exceeded")
            if sig == signal.SIGXFSZ:
                raise Violation("output", "output limit exceeded")
            if sig == signal.SIGKILL:
                raise Violation("memory", "the code was killed (SIGKILL), most likely for using too much memory")
            raise Violation("crash", f"the code crashed with signal {signal.Signals(sig).name}")
        raise Violation("crash", f"the code exited the process (exit code {code}) instead of returning")

    def proxy(self, name: str) -> Any:
        """A callable standing for the candidate's function ``name``."""

        def call(*args: Any, **kwargs: Any) -> Any:
            reply = self.request({"op": "call", "name": name, "args": encode(list(args)), "kwargs": encode(kwargs)})
            if not reply.get("ok"):
                raise _candidate_exception(str(reply.get("exc_type", "")), str(reply.get("error", "error")))
            return decode(reply["value"])

        call.__name__ = name
        return call

    def close(self) -> None:
        """Kill the candidate's process group and remove its files."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for fd in (self.to_child, self.from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.out_path)
        with contextlib.suppress(OSError):
            os.rmdir(self.tmpdir)


def _statement_tests(test_src: str, entry_point: str) -> tuple[ast.Module, list[ast.stmt], str]:
    """Split HumanEval's ``check(candidate)`` into its top-level statements."""
    tree = ast.parse(test_src)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            arg = node.args.args[0].arg if node.args.args else "candidate"
            rest = ast.Module(body=[n for n in tree.body if n is not node], type_ignores=[])
            return rest, list(node.body), arg
    raise ValueError("the test defines no check(candidate) function")


def _is_test(stmt: ast.stmt) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(stmt))


def _failure(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return "assertion failed" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, CandidateError):
        return f"the code raised {exc}"
    return f"{type(exc).__name__}: {exc}"[:500]


def grade(request: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission; see the module docstring for the request and report."""
    kind = request.get("kind", "asserts")
    base: dict[str, Any] = {"__name__": "__tests__", "__builtins__": builtins}
    results: list[dict[str, Any]] = []
    if kind == "check":
        rest, body, arg = _statement_tests(request["test"], request["entry_point"])
        units = [(stmt, _is_test(stmt)) for stmt in body]
        total = sum(1 for _, t in units if t) or 1
    else:
        tests = list(request["tests"])
        total = len(tests)
    candidate = Candidate(request)
    try:
        reply = candidate.request({"op": "load", "code": request["code"], "setup": request.get("setup") or ""})
        if not reply.get("ok"):
            return {
                "status": "load_error",
                "passed": 0,
                "total": total,
                "results": [],
                "message": f"the code failed to load: {reply.get('error')}",
            }
        proxies = {name: candidate.proxy(name) for name in reply["names"]}
        if kind == "check":
            exec(compile(rest, "<test>", "exec"), base)
            entry = request["entry_point"]
            if entry not in proxies:
                return {
                    "status": "load_error",
                    "passed": 0,
                    "total": total,
                    "results": [],
                    "message": f"the code does not define the function {entry!r}",
                }
            env = dict(base)
            env.update(proxies)
            env[arg] = proxies[entry]
            broken: str | None = None
            if not any(t for _, t in units):
                units = [(ast.parse(f"check({entry})").body[0], True)]
            for stmt, is_test in units:
                if broken is not None:
                    if is_test:
                        results.append({"ok": False, "error": broken})
                    continue
                try:
                    exec(compile(ast.Module(body=[stmt], type_ignores=[]), "<test>", "exec"), env)
                    if is_test:
                        results.append({"ok": True, "error": None})
                except Violation:
                    raise
                except BaseException as exc:
                    if is_test:
                        results.append({"ok": False, "error": _failure(exc)})
                    else:
                        broken = f"test setup failed: {_failure(exc)}"
        else:
            if request.get("setup"):
                exec(compile(request["setup"], "<setup>", "exec"), base)
            base.update(proxies)
            for test in tests:
                env = dict(base)
                try:
                    exec(compile(test, "<test>", "exec"), env)
                    results.append({"ok": True, "error": None})
                except Violation:
                    raise
                except BaseException as exc:
                    results.append({"ok": False, "error": _failure(exc)})
    except Violation as v:
        return {"status": v.status, "passed": 0, "total": total, "results": results, "message": v.message}
    finally:
        candidate.close()
    passed = sum(1 for r in results if r["ok"])
    return {
        "status": "ok",
        "passed": passed,
        "total": total,
        "results": results,
        "message": f"{passed}/{total} tests passed",
    }


def grader_main() -> None:
    """Read the request on stdin, grade, print the report."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass
    raw = sys.stdin.buffer.read()
    sys.stdin.close()
    try:
        request = json.loads(raw)
        report = grade(request)
    except BaseException as exc:
        report = {
            "status": "harness_error",
            "passed": 0,
            "total": 0,
            "results": [],
            "message": f"{type(exc).__name__}: {exc}",
        }
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    """Dispatch: ``candidate RFD WFD PID`` starts the candidate side, anything else grades."""
    if len(argv) >= 5 and argv[1] == "candidate":
        candidate_main(int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        grader_main()


if __name__ == "__main__":
    main(sys.argv)
