"""RemoteSandbox / AsyncRemoteSandbox: the SDK's API through the admin, same results and errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.errors import SandboxClosed, SandboxFileNotFound, SessionNotFound, SnapshotNotFound
from rock_env.remote import AsyncRemoteSandbox, RemoteSandbox
from rock_env.sandbox.models import CommandResult
from rock_env.server.runner import BackgroundServer

pytestmark = [pytest.mark.server, pytest.mark.bwrap]


def test_sessions_exec_files_processes(server: BackgroundServer, tmp_path: Path) -> None:
    with rock.Sandbox(runtime="namespace", base_url=server.url) as sb:
        assert isinstance(sb, RemoteSandbox) and sb.id
        first = sb.run("cd /tmp && export GREETING=hi")
        assert isinstance(first, CommandResult) and first.exit_code == 0
        assert sb.run("echo $GREETING; pwd").output == "hi\n/tmp\n"
        assert sb.run("(exit 3)").exit_code == 3
        assert sb.run("echo still").output == "still\n"
        assert sb.exec(["printf", "%s", "a b"]).output == "a b"
        assert sb.exec("cat", stdin="from stdin").output == "from stdin"
        assert sb.run("sleep 5", timeout=0.3).timed_out
        sb.create_session("other", env={"X": "1"})
        assert sb.run("echo $X", session="other").output == "1\n"
        assert {s.name for s in sb.sessions()} >= {"other"}
        sb.close_session("other")
        with pytest.raises(SessionNotFound):
            sb.close_session("other")
        sb.write_file("dir/hello.txt", "héllo")
        assert sb.read_file("dir/hello.txt") == "héllo"
        assert sb.read_file("dir/hello.txt", binary=True) == "héllo".encode()
        assert [e.name for e in sb.list_dir("dir")] == ["hello.txt"]
        with pytest.raises(SandboxFileNotFound):
            sb.read_file("missing.txt")
        proc = sb.spawn("sleep 0.2; echo background")
        assert proc.pid is not None
        assert proc.wait(10) == 0 and proc.output() == "background\n"
        slow = sb.spawn("sleep 30")
        slow.kill()
        assert slow.wait(10) is not None
        chunks = list(sb.stream("for i in 1 2 3; do echo $i; sleep 0.05; done"))
        assert "".join(chunks) == "1\n2\n3\n"
        assert "".join(sb.stream("echo $V; ls", cwd="dir", env={"V": "v"})) == "v\nhello.txt\n"
        with_env = sb.spawn("echo $W; ls", cwd="dir", env={"W": "w"})
        assert with_env.wait(10) == 0 and with_env.output() == "w\nhello.txt\n"
        # files: upload a directory, download it back
        src = tmp_path / "src"
        (src / "sub").mkdir(parents=True)
        (src / "a.txt").write_text("A")
        (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
        sb.upload(src, "up")
        assert sb.exec("cat up/a.txt").output == "A"
        sb.download("up", tmp_path / "back")
        assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == b"\x00\x01"
        snap = sb.snapshot()
        sb.write_file("up/a.txt", "changed")
        sb.restore(snap)
        assert sb.read_file("up/a.txt") == "A"
        assert snap in [s.id for s in sb.snapshots()]
        with pytest.raises(SnapshotNotFound):
            sb.restore("snap-nope")
        sb.delete_snapshot(snap)
        with pytest.raises(SnapshotNotFound):
            sb.restore(snap)
        assert sb.status().status == "running"
    with pytest.raises(SandboxClosed):
        sb.run("echo after stop")


def test_async_remote_sandbox(server: BackgroundServer) -> None:
    async def main() -> None:
        async with rock.AsyncSandbox(runtime="namespace", base_url=server.url) as sb:
            assert isinstance(sb, AsyncRemoteSandbox)
            results = await asyncio.gather(*(sb.exec(f"echo {i}") for i in range(5)))
            assert [r.output for r in results] == [f"{i}\n" for i in range(5)]
            assert (await sb.arun("echo async")).output == "async\n"
            await sb.write_file("f.txt", "x")
            assert await sb.read_file("f.txt") == "x"
            assert "".join([c async for c in sb.stream("echo a; echo b")]) == "a\nb\n"
            proc = await sb.spawn("echo bg")
            assert await proc.wait(10) == 0 and await proc.output() == "bg\n"

    asyncio.run(main())


@pytest.mark.bwrap
def test_namespace_runtime_through_the_server(server: BackgroundServer) -> None:
    with rock.Sandbox(runtime="namespace", base_url=server.url) as sb:
        assert sb.runtime == "namespace"
        assert sb.run("echo isolated; id -u").output.startswith("isolated\n")
