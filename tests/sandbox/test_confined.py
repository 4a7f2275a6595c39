"""The host-side file API never follows a sandbox's symlink on the host, and namespace sandboxes add no host mounts."""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.errors import PathOutsideSandbox, SandboxFileNotFound
from rock_env.sandbox import Sandbox
from rock_env.sandbox.confined import ConfinedRoots, open_root
from rock_env.sandbox.mounts import mounted_below


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as fh:
        return {line.split()[4] for line in fh}


@pytest.mark.bwrap
def test_namespace_sandboxes_add_no_host_mounts(sandbox_state: Path) -> None:
    before = _mount_points()  # other processes on the host may mount things meanwhile: compare ours only
    with Sandbox(runtime="namespace", disk="16m") as first, Sandbox(runtime="namespace") as second:
        first.write_file("a.txt", "one")
        second.write_file("a.txt", "two")
        new = _mount_points() - before
        assert not [p for p in new if str(sandbox_state) in p or first.id in p or second.id in p]
        assert mounted_below(sandbox_state) == []
        assert first.read_file("a.txt") == "one" and second.read_file("a.txt") == "two"
        sizes = first.run("df -k --output=size /workspace /tmp | tail -2").output.split()
        assert sizes == [str(16 * 1024)] * 2  # the disk limit applies to each
        assert first.run("stat -c %a /tmp").output == "1777\n"


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory outside /tmp (which the namespace sandbox has a private one of)."""
    with tempfile.TemporaryDirectory(prefix="rock-env-test-host-", dir="/var/tmp") as name:
        yield Path(name)


def test_symlinked_directory_to_host_is_never_followed(any_sandbox: Sandbox, host_dir: Path) -> None:
    (host_dir / "key").write_text("secret")
    any_sandbox.run(f"ln -s {host_dir} d; ln -s {host_dir}/key k")
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.write_file("d/planted", "x")
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.read_file("k")
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.list_dir("d")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("d/planted")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    buffer.seek(0)
    runtime = any_sandbox._runtime
    assert runtime is not None
    with pytest.raises(PathOutsideSandbox):
        runtime.put_archive("/workspace", buffer)
    snap = any_sandbox.snapshot()  # the links are copied as links, the host dir is not read
    any_sandbox.run("rm d k")
    any_sandbox.restore(snap)
    assert any_sandbox.run("readlink d").output == f"{host_dir}\n"
    assert sorted(p.name for p in host_dir.iterdir()) == ["key"]


def test_absolute_link_inside_the_workspace_is_followed_as_the_sandbox_sees_it(any_sandbox: Sandbox) -> None:
    any_sandbox.run("mkdir -p real && echo inside > real/f && ln -s /workspace/real alias")
    assert any_sandbox.read_file("alias/f") == "inside\n"
    any_sandbox.write_file("alias/g", "new")
    assert any_sandbox.run("cat real/g").output == "new"
    assert [e.name for e in any_sandbox.list_dir("alias")] == ["f", "g"]


def test_fifo_is_refused_without_blocking(any_sandbox: Sandbox) -> None:
    any_sandbox.run("mkfifo pipe")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            any_sandbox.read_file("pipe")
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "read_file blocked on a fifo"
    assert len(outcome) == 1 and isinstance(outcome[0], SandboxFileNotFound)


def test_confined_roots_resolution(tmp_path: Path) -> None:
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    (work / "sub").mkdir()
    (work / "up").symlink_to("..")
    (work / "cross").symlink_to("/scratch/x")
    (work / "loop").symlink_to("loop")
    roots = ConfinedRoots({"/ws": open_root("/", str(work)), "/scratch": open_root("/", str(other))})
    try:
        roots.write_file("/ws/cross", b"via link")  # an absolute link into the other root
        assert (other / "x").read_bytes() == b"via link"
        roots.write_file("/ws/sub/../a", b"a")
        assert (work / "a").read_bytes() == b"a"
        with pytest.raises(PathOutsideSandbox):
            roots.read_file("/ws/up/../etc/passwd")  # '..' above a root leaves the writable dirs
        assert roots.read_file("/ws/up/ws/a") == b"a"  # ... unless it comes back into one
        with pytest.raises(SandboxFileNotFound, match="symbolic links"):
            roots.read_file("/ws/loop")
        with pytest.raises(PathOutsideSandbox):
            roots.read_file("/etc/passwd")
    finally:
        roots.close()
