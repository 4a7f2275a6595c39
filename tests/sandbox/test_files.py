"""File API: write/read/list, upload/download as tar streams, and path confinement."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from rock_env.errors import InvalidArgument, PathOutsideSandbox, SandboxFileNotFound
from rock_env.sandbox import Sandbox
from rock_env.sandbox.files import check_member, extract_tar, normalize_path


def test_write_read_list(any_sandbox: Sandbox) -> None:
    any_sandbox.write_file("dir/sub/hello.txt", "héllo\n")
    any_sandbox.write_file("/workspace/bin.dat", bytes(range(256)))
    assert any_sandbox.read_file("dir/sub/hello.txt") == "héllo\n"
    assert any_sandbox.read_file("bin.dat", binary=True) == bytes(range(256))
    assert any_sandbox.run("cat dir/sub/hello.txt").output == "héllo\n"
    entries = {e.name: e for e in any_sandbox.list_dir(".")}
    assert entries["dir"].type == "dir" and entries["bin.dat"].type == "file" and entries["bin.dat"].size == 256
    assert [e.path for e in any_sandbox.list_dir("dir/sub")] == ["/workspace/dir/sub/hello.txt"]


@pytest.mark.bwrap
def test_tmp_is_part_of_a_namespace_sandbox(ns: Sandbox) -> None:
    ns.write_file("/tmp/t.txt", "tmp")
    assert ns.run("cat /tmp/t.txt").output == "tmp"
    assert ns.read_file("/tmp/t.txt") == "tmp"


def test_local_runtime_has_no_fake_tmp(local: Sandbox) -> None:
    with pytest.raises(PathOutsideSandbox):
        local.write_file("/tmp/t.txt", "x")
    assert local.run("echo x > $TMPDIR/t && cat $TMPDIR/t").output == "x\n"


def test_missing_files(any_sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxFileNotFound):
        any_sandbox.read_file("nope.txt")
    with pytest.raises(SandboxFileNotFound):
        any_sandbox.list_dir("nope")
    with pytest.raises(SandboxFileNotFound):
        any_sandbox.download("nope", tmp_path / "never-written")


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "/etc/passwd", "/root/x", "/workspace/../etc"])
def test_paths_outside_are_refused(any_sandbox: Sandbox, path: str) -> None:
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.write_file(path, "x")
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.read_file(path)


def test_symlink_pointing_out_is_refused(any_sandbox: Sandbox) -> None:
    any_sandbox.run("ln -s /etc/passwd passwd-link; ln -s / root-link; ln -s inside.txt ok-link; echo in > inside.txt")
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.read_file("passwd-link")
    with pytest.raises(PathOutsideSandbox):
        any_sandbox.write_file("root-link/etc/evil", "x")
    assert any_sandbox.read_file("ok-link") == "in\n"


def test_invalid_path_arguments(any_sandbox: Sandbox) -> None:
    with pytest.raises(InvalidArgument):
        any_sandbox.read_file("")
    with pytest.raises(InvalidArgument):
        any_sandbox.write_file("a\x00b", "x")
    with pytest.raises(InvalidArgument):
        any_sandbox.write_file("a.txt", 3)  # type: ignore[arg-type]


def test_upload_download_directory_round_trip(any_sandbox: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "project"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("print('hi')\n")
    (src / "big.bin").write_bytes(b"\x01" * (3 << 20))
    (src / "link").symlink_to("pkg/mod.py")
    (src / "pkg" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "pkg" / "run.sh").chmod(0o755)
    any_sandbox.upload(src, "proj")
    assert any_sandbox.run("python3 proj/pkg/mod.py; proj/pkg/run.sh; cat proj/link; wc -c < proj/big.bin").output == (
        "hi\nrun\nprint('hi')\n3145728\n"
    )
    any_sandbox.run("echo new > proj/pkg/new.txt")
    out = tmp_path / "back"
    any_sandbox.download("proj", out)
    assert (out / "pkg" / "new.txt").read_text() == "new\n"
    assert (out / "big.bin").stat().st_size == 3 << 20
    assert (out / "link").is_symlink() and (out / "link").read_text() == "print('hi')\n"
    assert (out / "pkg" / "run.sh").stat().st_mode & 0o111


def test_upload_download_single_file(any_sandbox: Sandbox, tmp_path: Path) -> None:
    local = tmp_path / "one.txt"
    local.write_text("one\n")
    any_sandbox.upload(local, "sub/renamed.txt")
    assert any_sandbox.run("cat sub/renamed.txt").output == "one\n"
    any_sandbox.download("/workspace/sub/renamed.txt", tmp_path / "got.txt")
    assert (tmp_path / "got.txt").read_text() == "one\n"


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def _tar_with(member: tarfile.TarInfo) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"x" if member.isfile() else b""
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    buffer.seek(0)
    return buffer


MALICIOUS = {
    "dotdot": _member("../evil"),
    "absolute": _member("/etc/evil"),
    "nested-dotdot": _member("a/../../evil"),
    "abs-symlink": _member("link", tarfile.SYMTYPE, "/etc/passwd"),
    "rel-symlink-out": _member("link", tarfile.SYMTYPE, "../../outside"),
    "hardlink-out": _member("hard", tarfile.LNKTYPE, "/etc/passwd"),
    "device": _member("dev", tarfile.CHRTYPE),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_tar_members_are_refused(case: str, tmp_path: Path, any_sandbox: Sandbox) -> None:
    member = MALICIOUS[case]
    with pytest.raises(PathOutsideSandbox):
        check_member(member)
    with pytest.raises(PathOutsideSandbox):
        extract_tar(_tar_with(member), tmp_path / "dest")
    runtime = any_sandbox._runtime
    assert runtime is not None
    with pytest.raises(PathOutsideSandbox):
        runtime.put_archive("/workspace", _tar_with(member))
    assert not (tmp_path / "evil").exists()
    assert any_sandbox.run("ls -A | wc -l").output == "0\n"


def test_normalize_path() -> None:
    assert normalize_path("a/b", "/workspace") == "/workspace/a/b"
    assert normalize_path("./a//b/", "/workspace") == "/workspace/a/b"
    assert normalize_path("/tmp/x", "/workspace") == "/tmp/x"
    with pytest.raises(PathOutsideSandbox):
        normalize_path("..", "/workspace")
