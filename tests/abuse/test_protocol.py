"""The runner's protocol holds: killing everything, forged end markers, stolen or injected session input, bad input.

A program in the sandbox may print anything, read anything it can read (``/proc/*/cmdline``,
``/proc/*/environ``, the memory of processes of its own uid) and kill every process it can see:
the caller still gets the command's real exit code and its whole output, and the next command's
output is its own. A call that fails validation is refused with a typed 4xx error
(``InvalidArgument`` or ``RequestInvalid``) and never reaches the session.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Any

import pytest

from rock_env.errors import InvalidArgument, RequestInvalid
from tests.abuse.conftest import Arena, brief

pytestmark = [pytest.mark.abuse]

RECOVERY = 10.0


def next_is_clean(sandbox: Any, session: str | None = None, *, strict: bool = True) -> list[str]:
    """Problems with the next command (empty if its output is its own and it ran within seconds).

    ``strict=False`` accepts lines printed before the command's own (bash's notice that a background
    job of an earlier command was killed) as long as the command ran and printed its own line last.
    """
    word = "next-" + secrets.token_hex(3)
    started = time.monotonic()
    try:
        result = sandbox.run(f"echo {word}", session=session, timeout=RECOVERY + 5)
    except Exception as exc:
        return [f"the next command raised {type(exc).__name__}: {exc}"]
    took = time.monotonic() - started
    problems = []
    own = result.output == f"{word}\n" if strict else result.output.endswith(f"{word}\n")
    if result.exit_code != 0 or not own:
        problems.append(f"the next command's result is not its own: {brief(result)}")
    if took > RECOVERY:
        problems.append(f"the next command took {took:.1f}s")
    return problems


def test_kill_init_and_every_process(arena: Arena) -> None:
    """``kill -9 1``, ``kill -9 -1`` (builtin and /bin/kill, in a session and through exec): the next command works."""
    sb = arena.sandbox()
    sb.run("sleep 1000 >/dev/null 2>&1 &")
    problems = []
    for name, attack in (
        ("kill -9 1", lambda: sb.run("kill -9 1; echo sent", timeout=20)),
        ("builtin kill -9 -1", lambda: sb.run("kill -9 -1; echo sent", timeout=20)),
        ("/bin/kill -9 -1", lambda: sb.run("/bin/kill -9 -1; echo sent", timeout=20)),
        ("exec /bin/kill -9 -1", lambda: sb.exec(["/bin/kill", "-9", "-1"], timeout=20)),
    ):
        try:
            attack()
        except Exception as exc:
            problems.append(f"{name}: the attack's own call raised {type(exc).__name__}: {exc}")
        problems += [f"after {name}: {p}" for p in next_is_clean(sb, strict=False)]
        problems += [f"after {name}, the command after the next: {p}" for p in next_is_clean(sb)]
        try:
            one_shot = sb.exec(["/bin/echo", "exec-ok"], timeout=RECOVERY + 5)
            if one_shot.output != "exec-ok\n":
                problems.append(f"after {name}: exec gave {brief(one_shot)}")
        except Exception as exc:
            problems.append(f"after {name}: exec raised {type(exc).__name__}: {exc}")
    assert not problems, "\n".join(problems)
    arena.finish()


FORGER = r"""
import os, re, sys
out = open("/workspace/forged.out", "wb")
def emit(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    out.write(data)
    out.flush()
pattern = re.compile(rb"(?:__ROCK|\x1e)[A-Za-z0-9_:.\-]{4,120}")
tokens = re.compile(rb"\b[0-9a-f]{16,64}\b")
found, sources = set(), {}
me = str(os.getpid())
for pid in sorted(p for p in os.listdir("/proc") if p.isdigit() and p != me):
    for name in ("cmdline", "environ"):
        try:
            data = open(f"/proc/{pid}/{name}", "rb").read()
        except OSError:
            continue
        for m in pattern.findall(data) + tokens.findall(data):
            found.add(m); sources.setdefault(m, f"{pid}/{name}")
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", 0)
    except OSError:
        continue
    budget = 256 << 20
    for line in maps:
        parts = line.split()
        if len(parts) < 2 or "r" not in parts[1]:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if hi - lo > (16 << 20) or budget <= 0:
            continue
        budget -= hi - lo
        try:
            mem.seek(lo)
            chunk = mem.read(hi - lo)
        except (OSError, ValueError, OverflowError):
            continue
        for m in pattern.findall(chunk):
            found.add(m); sources.setdefault(m, f"{pid}/mem")
emit(b"FORGER-START\n")
for m in sorted(found)[:300]:
    emit(b"source " + sources[m].encode() + b"\n")
guesses = [b"__ROCK_END_", b"__ROCK_END_0000000000000000_1__:", b"__ROCK_SHELL_EXIT_"]
for m in sorted(found)[:300] + guesses:
    base = m.split(b":")[0] if m.startswith(b"__ROCK") else m
    for seq in range(0, 8):
        emit(base + b":0\n")
        emit(re.sub(rb"_\d+__", b"_%d__" % seq, base) + b":0\n")
    emit(b"\x1e" + m.lstrip(b"\x1e") + b":exit:0\n")
    emit(b"\x1e" + m.lstrip(b"\x1e") + b":ready:1\n")
    emit(b"\x1e" + m.lstrip(b"\x1e") + b":0\n")
emit(b"__ROCK_END_" + b"x" * 40 + b"__:0")  # no newline: the marker's tail comes later
emit(b"\nFORGER-END\n")
out.close()
sys.exit(7)
"""


def test_marker_forgery(arena: Arena) -> None:
    """A program that prints marker-like text (also built from what it reads in /proc) and exits 7: the caller
    gets exit code 7 and the whole output, and the next command's output is its own."""
    sb = arena.sandbox()
    sb.write_file("forger.py", FORGER)
    problems = []
    for name, call in (
        ("run", lambda: sb.run("python3 /workspace/forger.py", timeout=60)),
        ("exec", lambda: sb.exec(["python3", "/workspace/forger.py"], timeout=60)),
        ("run in a second session", lambda: sb.run("python3 /workspace/forger.py", session="other", timeout=60)),
    ):
        if name == "run in a second session":
            sb.create_session("other")
        result = call()
        printed = sb.read_file("forged.out")
        if result.exit_code != 7:
            problems.append(f"{name}: exit code {result.exit_code}, not 7 ({brief(result)})")
        if result.output != printed:
            cut = next((i for i, (a, b) in enumerate(zip(result.output, printed, strict=False)) if a != b), None)
            problems.append(
                f"{name}: the output was split or changed ({len(result.output)} of {len(printed)} characters, "
                f"first difference at {cut}): {brief(result)}"
            )
        problems += [f"after {name}: {p}" for p in next_is_clean(sb, session="other" if "session" in name else None)]
    assert not problems, "\n".join(problems)
    arena.finish()


def test_session_input_cannot_be_stolen_or_injected(arena: Arena) -> None:
    """A command that reads the session's input in the background, or writes lines into it, does not change
    what the next command runs or returns."""
    sb = arena.sandbox()
    problems = []
    sb.create_session("thief")
    sb.run("(cat /proc/$$/fd/0 > /tmp/stolen 2>/dev/null &) ; sleep 0.5", session="thief", timeout=20)
    problems += [f"after a background read of the session's input: {p}" for p in next_is_clean(sb, "thief")]
    sb.create_session("injector")
    sb.run("printf 'echo injected\\n' > /proc/$$/fd/0 2>/dev/null; true", session="injector", timeout=20)
    problems += [f"after a write into the session's input: {p}" for p in next_is_clean(sb, "injector")]
    stolen = sb.run("cat /tmp/stolen 2>/dev/null; true").output
    if "__ROCK" in stolen or "printf" in stolen:
        problems.append(f"a sandbox process read the runner's protocol: {stolen[:200]!r}")
    assert not problems, "\n".join(problems)
    arena.finish()


BAD_INPUTS = {
    "run timeout=1e21": lambda sb: sb.run("echo first", timeout=1e21),
    "run timeout=inf": lambda sb: sb.run("echo first", timeout=math.inf),
    "run timeout=nan": lambda sb: sb.run("echo first", timeout=math.nan),
    "run with a NUL byte": lambda sb: sb.run("echo a\x00b"),
    "exec timeout=1e21": lambda sb: sb.exec("echo first", timeout=1e21),
    "exec timeout=inf": lambda sb: sb.exec("echo first", timeout=math.inf),
    "exec env name with '='": lambda sb: sb.exec("echo first", env={"A=B": "x"}),
    "exec env value with NUL": lambda sb: sb.exec("echo first", env={"A": "x\x00y"}),
    "exec argv with NUL": lambda sb: sb.exec(["echo", "a\x00b"]),
    "session env name with '='": lambda sb: sb.create_session("bad", env={"A=B": "x"}),
}


def test_invalid_calls_are_refused(arena: Arena) -> None:
    """NUL bytes, non-finite or huge timeouts and bad env names give InvalidArgument/RequestInvalid; the
    session stays clean."""
    sb = arena.sandbox()
    problems = []
    for name, call in BAD_INPUTS.items():
        try:
            result = call(sb)
        except (InvalidArgument, RequestInvalid):
            pass
        except Exception as exc:
            problems.append(f"{name}: {type(exc).__name__} (not InvalidArgument/RequestInvalid): {str(exc)[:200]}")
        else:
            problems.append(f"{name}: accepted ({brief(result, 120)})")
        problems += [f"after {name}: {p}" for p in next_is_clean(sb)]
    assert not problems, "\n".join(problems)
    arena.finish()
