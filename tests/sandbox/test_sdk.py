"""The SDK surface: sessions, exec, background processes, streaming, async twin, lifecycle errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.errors import InvalidArgument, SandboxClosed, SessionExists, SessionNotFound
from rock_env.sandbox import AsyncSandbox, Sandbox, SandboxConfig
from rock_env.sandbox.runtimes import select_runtime


def test_sessions_are_independent(any_sandbox: Sandbox) -> None:
    info = any_sandbox.create_session("build", env={"STAGE": "build"})
    assert info.name == "build" and info.alive
    any_sandbox.run("export WHO=default; mkdir -p d && cd d")
    any_sandbox.run("export WHO=build", session="build")
    assert any_sandbox.run("echo $WHO ${STAGE:-none}; basename $PWD").output == "default none\nd\n"
    assert any_sandbox.run("echo $WHO $STAGE", session="build").output == "build build\n"
    with pytest.raises(SessionExists):
        any_sandbox.create_session("build")
    any_sandbox.close_session("build")
    with pytest.raises(SessionNotFound):
        any_sandbox.run("true", session="build")
    with pytest.raises(SessionNotFound):
        any_sandbox.close_session("build")


def test_session_with_cwd(any_sandbox: Sandbox) -> None:
    any_sandbox.run("mkdir -p proj/src")
    any_sandbox.create_session("in-proj", cwd="proj/src")
    assert any_sandbox.run("basename $PWD", session="in-proj").output == "src\n"


def test_exec_one_shot(any_sandbox: Sandbox) -> None:
    any_sandbox.run("mkdir -p sub && echo inner > sub/f")
    assert any_sandbox.exec(["cat", "f"], cwd="sub").output == "inner\n"
    assert any_sandbox.exec("echo $X; exit 3", env={"X": "y"}).model_dump(include={"output", "exit_code"}) == {
        "output": "y\n",
        "exit_code": 3,
    }
    assert any_sandbox.exec(["wc", "-c"], stdin=b"12345").output.strip() == "5"
    assert any_sandbox.exec(["sh", "-c", "kill -9 $$"]).exit_code == 137
    with pytest.raises(InvalidArgument):
        any_sandbox.exec([])


def test_background_process(any_sandbox: Sandbox) -> None:
    proc = any_sandbox.spawn("echo started; sleep 0.3; echo finished; exit 7")
    assert proc.pid is not None and proc.running
    assert proc.wait(timeout=0.01) is None
    assert proc.wait(timeout=30) == 7
    assert proc.output() == "started\nfinished\n"
    assert proc.result().exit_code == 7 and not proc.running
    sleeper = any_sandbox.start("sleep 60")
    assert sleeper.running
    sleeper.kill()
    assert sleeper.wait(timeout=10) == 137


def test_stream_yields_output_as_it_comes(any_sandbox: Sandbox) -> None:
    stream = any_sandbox.stream("echo one; sleep 0.5; echo two")
    first_at = None
    chunks = []
    started = time.monotonic()
    for chunk in stream:
        if first_at is None:
            first_at = time.monotonic() - started
        chunks.append(chunk)
    assert "".join(chunks) == "one\ntwo\n"
    assert first_at is not None and first_at < 0.45  # "one" arrived before "two" was written
    assert stream.exit_code == 0


def test_stream_timeout(any_sandbox: Sandbox) -> None:
    stream = any_sandbox.stream("echo go; sleep 30", timeout=0.5)
    assert "".join(stream) == "go\n"
    assert stream.timed_out and stream.exit_code is None


def test_use_after_stop_and_lazy_start(sandbox_state: Path) -> None:
    sb = Sandbox(runtime="local")
    assert sb.status().status == "created"
    assert sb.run("echo lazy").output == "lazy\n"  # first use starts it
    assert sb.status().status == "running" and sb.runtime == "local"
    sb.stop()
    assert sb.status().status == "stopped"
    for call in (lambda: sb.run("true"), lambda: sb.exec("true"), lambda: sb.write_file("a", "b"), sb.start):
        with pytest.raises(SandboxClosed):
            call()


def test_config_object_and_field_overrides(sandbox_state: Path) -> None:
    config = SandboxConfig(runtime="local", env={"A": "1"})
    with Sandbox(config, env={"A": "2"}) as sb:
        assert sb.config.runtime == "local" and sb.run("echo $A").output == "2\n"
    with pytest.raises(InvalidArgument):
        Sandbox(config={"runtime": "local"})  # type: ignore[arg-type]


@pytest.mark.bwrap
def test_auto_picks_namespace_when_bubblewrap_works(sandbox_state: Path) -> None:
    assert select_runtime("auto") == "namespace"
    with Sandbox() as sb:
        assert sb.runtime == "namespace"
        assert sb.run("hostname").output == "sandbox\n"


async def test_async_sandbox_runs_concurrently(sandbox_state: Path) -> None:
    async with AsyncSandbox(runtime="local") as sb:
        await sb.create_session("a")
        await sb.create_session("b")
        started = time.monotonic()
        results = await asyncio.gather(
            sb.arun("sleep 0.5; echo a", session="a"), sb.arun("sleep 0.5; echo b", session="b")
        )
        assert [r.output for r in results] == ["a\n", "b\n"]
        assert time.monotonic() - started < 0.95  # the two sessions ran at the same time
        await sb.write_file("x.txt", "async")
        assert await sb.read_file("x.txt") == "async"
        assert (await sb.exec(["cat", "x.txt"])).output == "async"
        assert [c async for c in sb.stream("echo s1; echo s2")] in (["s1\ns2\n"], ["s1\n", "s2\n"])
        snap = await sb.snapshot()
        await sb.arun("rm x.txt")
        await sb.restore(snap)
        assert (await sb.arun("cat x.txt")).output == "async"
        assert (await sb.status()).status == "running"
    assert (await sb.status()).status == "stopped"


def test_base_url_returns_the_remote_client_with_the_same_config() -> None:
    # the public entry point (rock_env.Sandbox) registers the remote classes with the sandbox layer
    remote = rock.Sandbox(runtime="namespace", memory="1g", base_url="http://127.0.0.1:9")
    assert type(remote).__name__ == "RemoteSandbox"
    assert isinstance(remote, Sandbox)
    assert remote.config == SandboxConfig(runtime="namespace", memory="1g")
    remote_async = rock.AsyncSandbox(runtime="local", base_url="http://127.0.0.1:9")
    assert type(remote_async).__name__ == "AsyncRemoteSandbox"
    assert isinstance(remote_async, AsyncSandbox)


def test_background_job_survives_a_later_timeout(any_sandbox: Sandbox) -> None:
    any_sandbox.run("python3 -m http.server 0 --bind 127.0.0.1 > server.log 2>&1 &")
    assert any_sandbox.run("sleep 60", timeout=0.5).timed_out
    assert any_sandbox.run("jobs -r | wc -l").output == "1\n"
