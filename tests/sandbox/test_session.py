"""The bash session protocol over a plain host pipe (the same code runs in every runtime)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rock_env.errors import RockEnvError, SandboxClosed
from rock_env.sandbox import Sandbox
from rock_env.sandbox.hostproc import HostProcessPipe, descendants
from rock_env.sandbox.session import BASH_ARGV, BashSession, ansi_c_quote


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[BashSession]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    sess = BashSession("s", lambda: HostProcessPipe(list(BASH_ARGV), cwd=str(tmp_path), env=env), output_limit=4096)
    yield sess
    pid = sess.pid
    sess.close()
    assert pid is not None and _gone(pid)


def test_state_persists_between_commands(session: BashSession) -> None:
    assert session.run('cd /tmp && export GREETING=hi && greet() { echo "$GREETING $1"; }').exit_code == 0
    result = session.run("pwd; greet bob")
    assert result.output == "/tmp\nhi bob\n"
    assert result.exit_code == 0 and result.duration > 0


def test_exit_code_and_merged_stderr(session: BashSession) -> None:
    result = session.run("echo out; echo err >&2; exit_with() { return $1; }; exit_with 42")
    assert result.exit_code == 42
    assert result.output == "out\nerr\n"


def test_output_without_trailing_newline_and_quotes(session: BashSession) -> None:
    assert session.run("printf 'no newline'").output == "no newline"
    tricky = "echo 'single' \"double\" $'tab\\there' \\\\back"
    assert session.run(tricky).output == "single double tab\there \\back\n"
    assert ansi_c_quote("a'b\\c\n") == "$'a\\'b\\\\c\\n'"


def test_stdin_is_not_the_protocol(session: BashSession) -> None:
    result = session.run("cat; read -r line; echo rc=$?")
    assert result.output == "rc=1\n"
    assert session.run("echo still").output == "still\n"


def test_syntax_error_keeps_session(session: BashSession) -> None:
    result = session.run("if then fi")
    assert result.exit_code == 2 and "syntax error" in result.output
    assert session.run("echo ok").output == "ok\n"


def test_timeout_kills_the_command_and_keeps_session(session: BashSession) -> None:
    session.run("export KEEP=1")
    result = session.run("sleep 30 | cat", timeout=0.5)
    assert result.timed_out and result.exit_code is None and not result.session_restarted
    assert result.duration < 5
    assert session.pid is not None
    assert [p for p in descendants(session.pid) if not _gone(p)] == []
    assert session.run("echo $KEEP").output == "1\n"


def test_stuck_builtin_loop_restarts_session_and_says_so(session: BashSession) -> None:
    session.run("export KEEP=1")
    result = session.run("while :; do :; done", timeout=0.3)
    assert result.timed_out and result.session_restarted
    after = session.run("echo ${KEEP:-gone}")
    assert after.output == "gone\n" and after.exit_code == 0


def test_interrupt_sends_sigint_to_running_command(session: BashSession) -> None:
    pid = session.pid
    timer = threading.Timer(0.3, session.interrupt)
    timer.start()
    started = time.monotonic()
    result = session.run("sleep 20")
    timer.join()
    assert time.monotonic() - started < 10
    assert result.exit_code == 130 and result.interrupted
    assert session.run("echo alive").output == "alive\n"
    assert session.pid == pid  # the session itself survived Ctrl-C


def test_output_cap_with_visible_marker(session: BashSession) -> None:
    result = session.run("head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail")
    assert result.truncated and result.output_bytes == 100006
    kept, _, note = result.output.partition("\n[rock-env: output truncated")
    assert kept == "x" * 4096
    assert "100006 bytes" in note
    assert session.run("echo next").output == "next\n"


def test_binary_output_is_replaced_not_fatal(session: BashSession) -> None:
    result = session.run("printf '\\xff\\xfe\\x00ok'")
    assert result.exit_code == 0
    assert result.output == "\ufffd\ufffd\x00ok"


def test_exit_restarts_session_on_next_command(session: BashSession) -> None:
    result = session.run("exit 7")
    assert result.exit_code == 7
    after = session.run("echo back")
    assert after.output == "back\n" and after.session_restarted


def test_timeout_spares_background_jobs_of_earlier_commands(session: BashSession, tmp_path: Path) -> None:
    session.run("sleep 300 & echo $! > bg.pid")
    background = int((tmp_path / "bg.pid").read_text())
    time.sleep(0.05)  # a later command starts at least one clock tick after the job
    result = session.run("sleep 30", timeout=0.3)
    assert result.timed_out and not result.session_restarted
    assert not _gone(background)  # the earlier job still runs
    timer = threading.Timer(0.3, session.interrupt)
    timer.start()
    assert session.run("sleep 20").exit_code == 130
    timer.join()
    assert not _gone(background)
    session.run("kill $(cat bg.pid)")


def test_lazy_start_answers_the_check_with_the_first_command(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    opened: list[HostProcessPipe] = []

    def opener() -> HostProcessPipe:
        opened.append(HostProcessPipe(list(BASH_ARGV), cwd=str(tmp_path), env=env))
        return opened[-1]

    sess = BashSession("lazy", opener, output_limit=4096, lazy_start=True)
    try:
        first = sess.run("echo first; exit_code() { return 3; }; exit_code")
        assert (first.output, first.exit_code) == ("first\n", 3)
        assert sess.run("echo second").output == "second\n"
        assert len(opened) == 1
    finally:
        sess.close()


def test_lazy_start_of_a_shell_that_dies_is_a_clear_error(tmp_path: Path) -> None:
    broken = BashSession(
        "broken",
        lambda: HostProcessPipe(["sh", "-c", "echo cannot start >&2; exit 5"], cwd=str(tmp_path), env=None),
        output_limit=4096,
        lazy_start=True,
    )
    with pytest.raises(SandboxClosed, match=r"did not start.*cannot start"):
        broken.run("echo never")


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"cwd": "/nonexistent"}, "/nonexistent"),
        ({"cwd": "/etc/passwd"}, "/etc/passwd"),
        ({"env": {"PATH": ""}}, "did not start"),
    ],
)
def test_a_session_that_cannot_start_is_a_typed_error_and_the_sandbox_goes_on(
    any_sandbox: Sandbox, fields: dict[str, Any], said: str
) -> None:
    """A session that cannot start (bad cwd, an env without PATH) is a typed error naming why, not a crash."""
    with pytest.raises(RockEnvError) as caught:
        any_sandbox.create_session("broken", **fields)
    assert said in str(caught.value)
    assert "broken" not in [s.name for s in any_sandbox.sessions()]
    assert any_sandbox.run("echo still-fine").output == "still-fine\n"
