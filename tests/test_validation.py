"""The shared input checks (rock_env.validation): what passes, what is refused and why.

The local SDK runs them at the top of its public methods: a call that fails them never starts
a session or a process (checked on a real namespace sandbox).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rock_env.errors import InvalidArgument
from rock_env.protocol import ExecRequest, RunRequest, SessionCreateRequest, StreamRequest, invalid_request
from rock_env.sandbox import Sandbox
from rock_env.validation import (
    MAX_TIMEOUT,
    check_command,
    check_cpus,
    check_duration,
    check_env,
    check_env_name,
    check_path,
    check_session_name,
    check_timeout,
)


@pytest.mark.parametrize("good", ["echo hi", "", ["ls", "-l"], ("a",), ["x" * 10_000]])
def test_commands_that_pass(good: Any) -> None:
    assert check_command(good) == (good if isinstance(good, str) else list(good))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("echo \x00", "NUL byte"),
        (["echo", "a\x00"], r"command\[1\] contains a NUL byte"),
        ([], "empty list"),
        ([1], "must be a string"),
        (None, "must be a string"),
        (b"ls", "must be a string"),
    ],
)
def test_commands_that_are_refused(bad: Any, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        check_command(bad)


@pytest.mark.parametrize("name", ["A", "_", "MY_VAR", "a1", "x" * 1024])
def test_env_names_that_pass(name: str) -> None:
    assert check_env_name(name) == name


@pytest.mark.parametrize("name", ["", "1A", "A=B", "A B", "A-B", "A\x00", "é", "x" * 1025, 5])
def test_env_names_that_are_refused(name: Any) -> None:
    with pytest.raises(InvalidArgument, match="variable name"):
        check_env_name(name)


def test_env_values() -> None:
    assert check_env(None) is None
    assert check_env({"A": "", "B": "=x="}) == {"A": "", "B": "=x="}
    with pytest.raises(InvalidArgument, match=r"env\['A'\] contains a NUL byte"):
        check_env({"A": "a\x00"})
    with pytest.raises(InvalidArgument, match="must be a string"):
        check_env({"A": 1})
    with pytest.raises(InvalidArgument, match="dict"):
        check_env(["A=1"])


@pytest.mark.parametrize("good", [None, 0.001, 1, 30.0, MAX_TIMEOUT])
def test_timeouts_that_pass(good: Any) -> None:
    assert check_timeout(good) == (None if good is None else float(good))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (math.inf, "not a finite number"),
        (-math.inf, "not a finite number"),
        (math.nan, "not a finite number"),
        (1e21, r"at most 604800 s \(7 days\).*MAX_TIMEOUT"),
        (10**400, "not a finite number"),
        (MAX_TIMEOUT + 1, "too long"),
        (0, "must be positive"),
        (-1, "must be positive"),
        (True, "number of seconds"),
        ("5", "number of seconds"),
    ],
)
def test_timeouts_that_are_refused(bad: Any, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        check_timeout(bad)


def test_durations_have_their_own_cap() -> None:
    assert check_duration(86400 * 30, "ttl", cap=86400 * 365) == 86400 * 30
    with pytest.raises(InvalidArgument, match="ttl"):
        check_duration(86400 * 366, "ttl", cap=86400 * 365)


def test_paths_and_session_names() -> None:
    assert check_path("a/b") == "a/b"
    for bad in ["", "a\x00b", "x" * 4097, None]:
        with pytest.raises(InvalidArgument):
            check_path(bad)
    assert check_session_name("agent-1") == "agent-1" and check_session_name(None, allow_none=True) is None
    for bad in ["", "a/b", "a\nb", "a\x00", "x" * 129, None, 3]:
        with pytest.raises(InvalidArgument):
            check_session_name(bad)


def test_cpus() -> None:
    assert check_cpus(None) is None and check_cpus(2) == 2.0
    for bad in [0, -1, math.inf, math.nan, 10_000, True]:
        with pytest.raises(InvalidArgument):
            check_cpus(bad)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (RunRequest, '{"cmd": "a\\u0000"}'),
        (RunRequest, '{"cmd": "a", "timeout": Infinity}'),
        (ExecRequest, '{"cmd": ["a"], "env": {"A=B": "x"}}'),
        (StreamRequest, '{"cmd": "a", "cwd": "\\u0000"}'),
        (SessionCreateRequest, '{"name": "a/b"}'),
    ],
)
def test_wire_models_use_the_same_checks(model: Any, body: str) -> None:
    with pytest.raises(ValidationError) as failed:
        model.model_validate_json(body)
    error = invalid_request(failed.value, "the test")
    assert type(error) is InvalidArgument and error.http_status == 422


@pytest.fixture
def ns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A started namespace sandbox with a private state root, stopped after the test."""
    monkeypatch.setenv("ROCK_ENV_SANDBOX_STATE", str(tmp_path / "state"))
    with Sandbox(runtime="namespace") as sb:
        yield sb


@pytest.mark.bwrap
def test_the_sdk_refuses_before_any_session_starts(ns: Sandbox) -> None:
    for call in (
        lambda: ns.run("echo \x00"),
        lambda: ns.run("echo", timeout=math.inf),
        lambda: ns.run("echo", session="a/b"),
        lambda: ns.exec(["env"], env={"A=B": "1"}),
        lambda: ns.spawn("sleep 1", cwd="\x00"),
        lambda: ns.stream("echo", timeout=1e21),
        lambda: ns.create_session("x", env={"": "1"}),
        lambda: ns.write_file("a\x00", "x"),
    ):
        with pytest.raises(InvalidArgument):
            call()
    assert ns.sessions() == []  # not even the default session was opened
    assert ns.run("echo fine").output == "fine\n"
