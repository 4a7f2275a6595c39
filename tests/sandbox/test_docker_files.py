"""File API and archive escapes on the docker runtime, and the same refusals on every runtime.

Against the real Docker daemon and the base image (``rock-env image build-base``). Every refused
path raises :class:`~rock_env.errors.PathOutsideSandbox`, the class the namespace and local runtimes
raise; nothing of a refused archive reaches the sandbox. Each test checks that the containers this
process created are gone afterwards.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rock_env.errors import PathOutsideSandbox, SandboxFileNotFound
from rock_env.sandbox import Sandbox
from tests.sandbox.dockerutil import MakeSandbox, SandboxFactory, own_containers


@pytest.fixture
def make_sandbox(request: pytest.FixtureRequest, sandbox_state: Path) -> Iterator[MakeSandbox]:
    """Factory of started sandboxes (docker by default); stops them and checks no container is left."""
    factory = SandboxFactory()
    before: list[str] | None = None

    def make(runtime: str = "docker", **fields: Any) -> Sandbox:
        nonlocal before
        if runtime == "docker":
            fields.setdefault("image", request.getfixturevalue("docker_image"))
            if before is None:
                before = own_containers()
        return factory(runtime=runtime, **fields)

    yield make
    factory.stop_all()
    if before is not None:
        assert own_containers() == before, "containers left behind"


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    """A tar stream of the given members (``data`` for regular files)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    buffer.seek(0)
    return buffer


def member(
    name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", data: bytes = b"x"
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = (1, 3) if kind == tarfile.CHRTYPE else (8, 0)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


#: tar members that must be refused, each after a harmless first member (so that a partial write would show)
BAD_MEMBERS = {
    "absolute": member("/etc/rock-env-evil"),
    "dotdot": member("../rock-env-evil"),
    "dotdot-inside-name": member("sub/../../rock-env-evil"),
    "absolute-symlink": member("link", tarfile.SYMTYPE, link="/etc"),
    "symlink-out": member("link", tarfile.SYMTYPE, link="../../etc"),
    "char-device": member("null2", tarfile.CHRTYPE),
    "block-device": member("disk", tarfile.BLKTYPE),
    "fifo": member("fifo", tarfile.FIFOTYPE),
    "hardlink-absolute": member("hard", tarfile.LNKTYPE, link="/etc/passwd"),
    "hardlink-dotdot": member("hard", tarfile.LNKTYPE, link="../etc/passwd"),
}


@pytest.fixture(params=["tmpfs", "remote"])
def daemon_view(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the docker runtime reaches files: its tmpfs on the host, or (``remote``: a daemon that
    cannot see this process's mounts) the archive API."""
    if request.param == "remote":
        import rock_env.sandbox.runtimes.docker.engine as engine

        monkeypatch.setattr(engine, "_shares_mounts", False)
    return str(request.param)


@pytest.mark.docker
@pytest.mark.parametrize("case", sorted(BAD_MEMBERS))
def test_archive_writer_refuses_escaping_and_special_members(
    make_sandbox: MakeSandbox, daemon_view: str, case: str
) -> None:
    sb = make_sandbox()
    runtime = sb._rt()
    stream = tar_of(member("first.txt"), BAD_MEMBERS[case])
    with pytest.raises(PathOutsideSandbox, match="refused"):
        runtime.put_archive("/workspace/in", stream)
    # nothing landed outside, and no device, fifo or link was made
    outside = "ls -d /etc/rock-env-evil /rock-env-evil /workspace/rock-env-evil 2>/dev/null"
    assert sb.run(outside).output == ""
    listing = sb.run("ls -A /workspace/in 2>/dev/null || true").output.split()
    assert not {"link", "null2", "disk", "fifo", "hard"} & set(listing), listing
    if daemon_view == "remote":  # the archive is checked whole before the daemon extracts anything
        assert "first.txt" not in listing


@pytest.mark.docker
def test_archive_writer_keeps_links_that_stay_inside(make_sandbox: MakeSandbox, daemon_view: str) -> None:
    sb = make_sandbox()
    stream = tar_of(
        member("d", tarfile.DIRTYPE),
        member("d/file.txt", data=b"inside"),
        member("d/rel", tarfile.SYMTYPE, link="file.txt"),
        member("d/up", tarfile.SYMTYPE, link="../d/file.txt"),
        member("d/hard", tarfile.LNKTYPE, link="d/file.txt"),
    )
    sb._rt().put_archive("/workspace", stream)
    assert sb.run("cat d/rel d/up d/hard").output == "insideinsideinside"
    assert {e.name: e.type for e in sb.list_dir("d")} == {
        "file.txt": "file",
        "hard": "file",
        "rel": "symlink",
        "up": "symlink",
    }


def _escapes(tmp_path: Path) -> dict[str, Callable[[Sandbox], object]]:
    """File API calls that must be refused: ``..``, absolute paths outside, symlinks leading out."""
    local = tmp_path / "local.txt"  # written by the tests before the calls
    return {
        "read ..": lambda sb: sb.read_file("../etc/passwd"),
        "read absolute": lambda sb: sb.read_file("/etc/passwd"),
        "read through absolute link": lambda sb: sb.read_file("links/etc/passwd"),
        "read through relative link": lambda sb: sb.read_file("links/up/etc/passwd"),
        "read a link to a file outside": lambda sb: sb.read_file("links/passwd"),
        "write absolute": lambda sb: sb.write_file("/etc/rock-env-evil", "x"),
        "write through link": lambda sb: sb.write_file("links/etc/rock-env-evil", "x"),
        "write to a link to a file outside": lambda sb: sb.write_file("links/passwd", "x"),
        "list absolute": lambda sb: sb.list_dir("/etc"),
        "list /proc": lambda sb: sb.list_dir("/proc/1"),
        "list through link": lambda sb: sb.list_dir("links/etc"),
        "upload ..": lambda sb: sb.upload(local, "../x.txt"),
        "upload absolute": lambda sb: sb.upload(local, "/etc/x.txt"),
        "upload through link": lambda sb: sb.upload(local, "links/etc/x.txt"),
        "download absolute": lambda sb: sb.download("/etc/passwd", tmp_path / "out1"),
        "download through link": lambda sb: sb.download("links/etc", tmp_path / "out2"),
        "download ..": lambda sb: sb.download("../etc", tmp_path / "out3"),
    }


ESCAPES = sorted(_escapes(Path("/nonexistent")))
LINKS = "mkdir -p links && ln -sfn /etc links/etc && ln -sfn ../.. links/up && ln -sfn /etc/passwd links/passwd"


@pytest.mark.docker
@pytest.mark.parametrize("case", ESCAPES)
def test_file_api_escapes_are_refused_on_docker(
    make_sandbox: MakeSandbox, daemon_view: str, tmp_path: Path, case: str
) -> None:
    sb = make_sandbox()
    assert sb.run(LINKS).exit_code == 0
    (tmp_path / "local.txt").write_text("host file")
    with pytest.raises(PathOutsideSandbox) as caught:
        _escapes(tmp_path)[case](sb)
    message = str(caught.value)  # names the path and says what to do instead
    assert "'" in message and ("use " in message or "give " in message), message
    assert sb.run("ls /etc/rock-env-evil /etc/x.txt 2>&1 || true").output.count("No such file") == 2
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


@pytest.mark.docker
def test_files_in_the_workdir_and_tmp_still_work(make_sandbox: MakeSandbox, daemon_view: str, tmp_path: Path) -> None:
    sb = make_sandbox()
    sb.run("mkdir -p links && ln -sfn /tmp links/tmp && ln -sfn ../data links/data && mkdir data")
    sb.write_file("links/tmp/through.txt", "via an absolute link to /tmp")
    sb.write_file("links/data/rel.txt", "via a relative link")
    assert sb.read_file("/tmp/through.txt") == "via an absolute link to /tmp"
    assert sb.read_file("data/rel.txt") == "via a relative link"
    assert [e.name for e in sb.list_dir("links/data")] == ["rel.txt"]
    with pytest.raises(SandboxFileNotFound):
        sb.read_file("data")  # a directory is not a file
    sb.download("links/data", tmp_path / "back")
    assert (tmp_path / "back" / "rel.txt").read_text() == "via a relative link"


@pytest.mark.parametrize(
    "runtime",
    [pytest.param("docker", marks=pytest.mark.docker), pytest.param("namespace", marks=pytest.mark.bwrap), "local"],
)
def test_refused_paths_raise_the_same_error_on_every_runtime(
    make_sandbox: MakeSandbox, tmp_path: Path, runtime: str
) -> None:
    """The same inputs give PathOutsideSandbox on docker, namespace and local (file API and archives)."""
    sb = make_sandbox(runtime)
    assert sb.run(LINKS).exit_code == 0
    (tmp_path / "local.txt").write_text("host file")
    outcomes: dict[str, str] = {}
    for case, call in _escapes(tmp_path).items():
        try:
            call(sb)
            outcomes[case] = "accepted"
        except Exception as exc:  # the class is what is compared
            outcomes[case] = type(exc).__name__
    workdir = sb.config.workdir
    for case, bad in BAD_MEMBERS.items():
        try:
            sb._rt().put_archive(f"{workdir}/in-{case}", tar_of(bad))
            outcomes[f"tar {case}"] = "accepted"
        except Exception as exc:
            outcomes[f"tar {case}"] = type(exc).__name__
    assert outcomes == dict.fromkeys(outcomes, "PathOutsideSandbox")
