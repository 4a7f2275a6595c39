"""File API and tar escapes: ``..``, absolute paths, symlinks out, links and special files in archives.

Every refused path raises :class:`~rock_env.errors.PathOutsideSandbox` on every runtime, locally
and through the server (the same class), and nothing lands outside the sandbox's workspace: on the
host nothing appears, inside no file appears outside the workspace and no device or fifo is made.
Archives are fed to the runtime's archive writer (``put_archive``, what ``upload`` and snapshots
use) locally, and as the raw body of ``PUT /api/v1/sandboxes/{id}/archive`` through the server.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rock_env.errors import PathOutsideSandbox
from tests.abuse.conftest import Arena, brief

pytestmark = [pytest.mark.abuse]


def outcome(call: Callable[[], Any]) -> str:
    """What a call did: ``refused`` (PathOutsideSandbox), ``accepted``, or the other exception's class."""
    try:
        call()
    except PathOutsideSandbox:
        return "refused"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:160]}"
    return "accepted"


def host_leftovers(tok: str) -> list[str]:
    """Files named after ``tok`` that appeared on the host (removed, and reported)."""
    found = []
    for directory in ("/etc", "/tmp", "/", "/usr", "/var/tmp"):
        for path in Path(directory).glob(f"*{tok}*"):
            found.append(str(path))
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def test_file_api_escapes(arena: Arena, tmp_path: Path) -> None:
    """read/write/list/download through ``..``, absolute paths and symlinks out of the workspace are refused."""
    sb = arena.sandbox()
    tok = secrets.token_hex(6)
    setup = sb.run(
        "ln -s /etc etclink && ln -s / rootlink && ln -s ../../../../../../../etc uplink && "
        "ln -s /etc/passwd pwlink && mkdir -p d && ln -s /etc /tmp/tmplink && echo ok"
    )
    assert setup.output == "ok\n", brief(setup)
    attempts: dict[str, Callable[[], Any]] = {
        "read ../../etc/passwd": lambda: sb.read_file("../../etc/passwd"),
        "read d/../../etc/passwd": lambda: sb.read_file("d/../../etc/passwd"),
        "write ../../tmp/<tok>": lambda: sb.write_file(f"../../tmp/rock-env-abuse-{tok}", "x"),
        "read /etc/passwd": lambda: sb.read_file("/etc/passwd"),
        "read /etc/shadow": lambda: sb.read_file("/etc/shadow"),
        "write /etc/<tok>": lambda: sb.write_file(f"/etc/rock-env-abuse-{tok}", "x"),
        "list /etc": lambda: sb.list_dir("/etc"),
        "read etclink/passwd (symlink to /etc)": lambda: sb.read_file("etclink/passwd"),
        "read rootlink/etc/shadow (symlink to /)": lambda: sb.read_file("rootlink/etc/shadow"),
        "read uplink/passwd (relative symlink out)": lambda: sb.read_file("uplink/passwd"),
        "read pwlink (symlink to /etc/passwd)": lambda: sb.read_file("pwlink"),
        "read /tmp/tmplink/passwd": lambda: sb.read_file("/tmp/tmplink/passwd"),
        "write etclink/<tok>": lambda: sb.write_file(f"etclink/rock-env-abuse-{tok}", "x"),
        "write pwlink": lambda: sb.write_file("pwlink", "x"),
        "list etclink": lambda: sb.list_dir("etclink"),
        "download etclink/passwd": lambda: sb.download("etclink/passwd", tmp_path / "dl-passwd"),
        "download rootlink/etc": lambda: sb.download("rootlink/etc", tmp_path / "dl-etc"),
        "upload into etclink": lambda: sb.upload(__file__, f"etclink/rock-env-abuse-{tok}"),
    }
    results = {name: outcome(call) for name, call in attempts.items()}
    wrong = {name: got for name, got in results.items() if got != "refused"}
    leftovers = host_leftovers(tok)
    inside = sb.run(f"ls -d /etc/rock-env-abuse-{tok} /tmp/rock-env-abuse-{tok} 2>/dev/null; true")
    assert not leftovers, f"files appeared on the host: {leftovers}"
    assert inside.output == "", f"files appeared outside the workspace inside the sandbox: {inside.output!r}"
    assert not wrong, "not refused with PathOutsideSandbox:\n  " + "\n  ".join(f"{k}: {v}" for k, v in wrong.items())
    arena.finish()


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"abuse\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def _special(name: str, kind: bytes, *, link: str = "", major: int = 0, minor: int = 0) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.devmajor, info.devminor = major, minor
    info.mode = 0o666
    return info, None


def bad_archives(tok: str) -> dict[str, bytes]:
    """Archives with one top-level entry ``x`` (as an upload sends) that each try one escape."""
    name = f"rock-env-abuse-{tok}"
    return {
        "member with ..": _tar(_dir("x"), _file(f"x/../../../{name}")),
        "absolute member": _tar(_file(f"/etc/{name}")),
        "symlink to /etc, then a file through it": _tar(
            _dir("x"), _special("x/lnk", tarfile.SYMTYPE, link="/etc"), _file(f"x/lnk/{name}")
        ),
        "relative symlink out, then a file through it": _tar(
            _dir("x"), _special("x/up", tarfile.SYMTYPE, link="../../../../../../etc"), _file(f"x/up/{name}")
        ),
        "hard link to /etc/passwd": _tar(_dir("x"), _special("x/hl", tarfile.LNKTYPE, link="/etc/passwd")),
        "character device (1,3)": _tar(_dir("x"), _special("x/devnull", tarfile.CHRTYPE, major=1, minor=3)),
        "block device (7,0)": _tar(_dir("x"), _special("x/loop", tarfile.BLKTYPE, major=7, minor=0)),
        "fifo": _tar(_dir("x"), _special("x/fifo", tarfile.FIFOTYPE)),
    }


def put_archive(arena: Arena, sandbox: Any, data: bytes) -> None:
    """Feed ``data`` to the target's archive writer: the runtime's put_archive, or the server's upload route."""
    if not arena.target.remote:
        sandbox._rt().put_archive("/workspace/up", io.BytesIO(data))
        return
    from rock_env.remote.client import error_from_response

    response = httpx.put(
        f"{arena.url}/api/v1/sandboxes/{sandbox.id}/archive",
        params={"path": "up"},
        content=data,
        headers={"authorization": f"Bearer {arena.token}", "content-type": "application/octet-stream"},
        timeout=60,
    )
    if response.status_code >= 400:
        raise error_from_response(response)


def test_tar_escapes(arena: Arena) -> None:
    """Archive members that are ``..``, absolute, links out or special files are refused with PathOutsideSandbox."""
    sb = arena.sandbox()
    tok = secrets.token_hex(6)
    sb.run("mkdir -p /workspace/up")
    results = {
        name: outcome(lambda data=data: put_archive(arena, sb, data)) for name, data in bad_archives(tok).items()
    }
    wrong = {name: got for name, got in results.items() if got != "refused"}
    leftovers = host_leftovers(tok)
    inside = sb.run(
        f"ls -d /etc/rock-env-abuse-{tok} /rock-env-abuse-{tok} /workspace/rock-env-abuse-{tok} 2>/dev/null; "
        "find /workspace /tmp \\( -type c -o -type b -o -type p \\) -print 2>/dev/null; true"
    )
    assert not leftovers, f"files appeared on the host: {leftovers}"
    assert inside.output == "", f"archive members landed outside the workspace or as special files: {inside.output!r}"
    assert not wrong, "not refused with PathOutsideSandbox:\n  " + "\n  ".join(f"{k}: {v}" for k, v in wrong.items())
    arena.finish()


def test_upload_of_links_and_fifos(arena: Arena, tmp_path: Path) -> None:
    """``upload()`` of a local tree holding a symlink to /etc (and a fifo) is refused; a download never
    recreates a link out of the target directory on the client."""
    sb = arena.sandbox()
    tok = secrets.token_hex(6)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "plain.txt").write_text("plain\n")
    os.symlink("/etc", tree / "etclink")
    fifo_tree = tmp_path / "fifo-tree"
    fifo_tree.mkdir()
    os.mkfifo(fifo_tree / "fifo")
    results = {
        "upload a tree with a symlink to /etc": outcome(lambda: sb.upload(tree, f"t-{tok}")),
        "upload a tree with a fifo": outcome(lambda: sb.upload(fifo_tree, f"f-{tok}")),
    }
    sb.run("mkdir -p out && ln -s /etc out/etclink && ln -s ../../../etc out/uplink && echo x > out/file")
    target = tmp_path / "downloaded"
    got = outcome(lambda: sb.download("out", target))
    links_out = [
        str(path)
        for path in (target.rglob("*") if target.exists() else [])
        if path.is_symlink() and not os.path.realpath(path).startswith(str(target) + os.sep)
    ]
    wrong = {name: result for name, result in results.items() if result != "refused"}
    assert got in ("refused", "accepted"), f"download of a tree with links out: {got}"
    assert not links_out, f"download recreated links out of the target on the client: {links_out}"
    assert not host_leftovers(tok)
    assert not wrong, "not refused with PathOutsideSandbox:\n  " + "\n  ".join(f"{k}: {v}" for k, v in wrong.items())
    arena.finish()
