"""Isolation of the namespace (bubblewrap) runtime, and that stopping leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.errors import ConfigError, ImageNotFound, SandboxClosed
from rock_env.sandbox import Sandbox
from rock_env.sandbox.gc import list_sandboxes
from rock_env.sandbox.mounts import mounted_below

pytestmark = pytest.mark.bwrap


def _running(pid: int) -> bool:
    """True if the process exists and is not a zombie waiting to be reaped by its new parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_root_is_read_only_system_dirs_without_secrets(ns: Sandbox) -> None:
    listing = ns.run("ls /").output.split()
    assert {"usr", "etc", "workspace", "tmp", "proc", "dev", "var"} <= set(listing)
    assert not {"root", "home", "opt", "srv"} & set(listing)
    assert ns.run("ls /var; readlink /var/tmp").output == "tmp\n../tmp\n"  # /var/tmp is a link into /tmp
    result = ns.run("wc -c < /etc/shadow; touch /usr/x 2>&1; touch /etc/x 2>&1; ls /etc/ssl/private | wc -l")
    lines = result.output.splitlines()
    assert lines[0] == "0"
    assert "Read-only file system" in lines[1] and "Read-only file system" in lines[2]
    assert lines[3] == "0"


def test_host_state_is_invisible(ns: Sandbox, sandbox_state: Path) -> None:
    assert ns.run(f"ls {sandbox_state} 2>&1").exit_code != 0
    assert ns.run("ls /root /home 2>&1").exit_code != 0


def test_namespaces_and_capabilities(ns: Sandbox) -> None:
    out = ns.run("hostname; echo $$; ls /proc | grep -c '^[0-9]'; grep CapEff /proc/self/status").output.split("\n")
    assert out[0] == "sandbox"
    assert int(out[1]) < 10  # pid namespace: the session's bash has a tiny pid
    assert int(out[2]) < 10  # only the sandbox's own processes are visible
    assert out[3].split()[1] == "0000000000000000"
    other = ns.exec("grep CapEff /proc/self/status; echo $$")  # entered with nsenter + setpriv
    assert other.output.split()[1] == "0000000000000000" and int(other.output.split()[2]) < 20


def test_workspace_and_tmp_are_writable_and_shared_by_sessions(ns: Sandbox) -> None:
    assert ns.run("echo hi > /workspace/a; echo tmp > /tmp/b; pwd").output == "/workspace\n"
    ns.create_session("other")
    assert ns.run("cat a /tmp/b", session="other").output == "hi\ntmp\n"


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    return server


def test_no_network_by_default(ns: Sandbox) -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        result = ns.run(f"echo > /dev/tcp/127.0.0.1/{port}", timeout=10)
    assert result.exit_code != 0
    assert ns.run("grep -c ':' /proc/net/dev").output.strip() == "1"  # only lo


def test_network_on_request_reaches_host_loopback(sandbox_state: Path) -> None:
    with _listener() as server, Sandbox(runtime="namespace", network=True) as sb:
        port = server.getsockname()[1]
        result = sb.run(f"echo hello > /dev/tcp/127.0.0.1/{port} && echo sent", timeout=10)
        assert result.output == "sent\n"
        conn, _ = server.accept()
        with conn:
            assert conn.recv(16) == b"hello\n"


def test_env_and_home(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", env={"ANSWER": "42"}) as sb:
        assert sb.run("echo $ANSWER $HOME").output == "42 /workspace\n"
        assert sb.exec("echo $ANSWER", env={"ANSWER": "43"}).output == "43\n"
        assert "ROCK_ENV_SANDBOX_STATE" not in sb.run("env").output


def test_stop_kills_everything_and_removes_state(sandbox_state: Path) -> None:
    sb = Sandbox(runtime="namespace", memory="128m", cpus=1)
    sb.start()
    sb.run("sleep 300 & sleep 301 &")
    sb.spawn("sleep 302")
    runtime = sb._runtime
    assert runtime is not None and runtime.cgroups is not None
    pids = list(runtime.host_pids)
    cgroup_dirs = list(runtime.cgroups.paths.values())
    assert len(cgroup_dirs) == 3 and all(p.is_dir() for p in cgroup_dirs)
    inside = runtime.cgroups.pids()
    assert len(inside) >= 5  # init, keeper sh, bash, 2 sleeps, nsenter'd sleep
    assert [i.id for i in list_sandboxes()] == [sb.id]
    sb.stop()
    with pytest.raises(SandboxClosed):  # unusable at once; the host state goes in the background
        sb.run("true")
    assert runtime.wait_stopped(timeout=30)  # type: ignore[attr-defined]
    for pid in [*pids, *inside]:
        assert not _running(pid)
    assert not any(p.exists() for p in cgroup_dirs)
    assert mounted_below(sb.state_dir) == []
    assert not sb.state_dir.exists()
    with pytest.raises(SandboxClosed):
        sb.run("true")
    sb.stop()  # idempotent


@pytest.fixture
def image_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory others can search, configured as an image root."""
    root = Path(tempfile.mkdtemp(prefix="rock-env-images-", dir="/tmp"))
    root.chmod(0o755)
    monkeypatch.setenv("ROCK_ENV_IMAGE_ROOTS", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_rootfs_directory_image(sandbox_state: Path, image_root: Path) -> None:
    rootfs = image_root / "rootfs"
    (rootfs / "usr").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    for name in ("bin", "lib", "lib64", "sbin"):
        (rootfs / name).symlink_to(f"usr/{name}")
    (rootfs / "etc" / "image-marker").write_text("from-rootfs\n")
    # a tiny rootfs: the host's /usr bound read-only into it, plus a file only this image has
    subprocess.run(["mount", "--bind", "-o", "ro", "/usr", str(rootfs / "usr")], check=True)
    try:
        # the bind must be read-only: a crash before the umount must not let tmp cleanup touch /usr
        with pytest.raises(OSError, match="Read-only"):
            (rootfs / "usr" / "rock-env-probe").write_text("x")
        with Sandbox(runtime="namespace", image=str(rootfs)) as sb:
            assert sb.run("cat /etc/image-marker; ls /etc | wc -l").output == "from-rootfs\n1\n"
    finally:
        subprocess.run(["umount", str(rootfs / "usr")], check=True)
    assert not os.path.ismount(rootfs / "usr")


@pytest.mark.parametrize("image", ["/", "/etc", "/usr/..", "/tmp/../"])
def test_host_directories_are_never_a_root(sandbox_state: Path, image: str) -> None:
    with pytest.raises(ConfigError, match="ROCK_ENV_IMAGE_ROOTS"):
        Sandbox(runtime="namespace", image=image).start()
    assert not list_sandboxes()


def test_rootfs_outside_the_image_roots_is_refused(sandbox_state: Path, image_root: Path, tmp_path: Path) -> None:
    rootfs = tmp_path / "elsewhere"
    (rootfs / "usr").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"not allowed.*image root"):
        Sandbox(runtime="namespace", image=str(rootfs)).start()
    # a link from inside a root to outside it is judged by where it leads
    (image_root / "link").symlink_to(rootfs)
    with pytest.raises(ConfigError, match="not allowed"):
        Sandbox(runtime="namespace", image=str(image_root / "link")).start()


def test_rootfs_the_sandbox_uid_cannot_reach_says_why(sandbox_state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root maps sandboxes to other uids")
    private = Path(tempfile.mkdtemp(prefix="rock-env-private-", dir="/tmp"))  # mode 700
    try:
        (private / "rootfs" / "usr").mkdir(parents=True)
        monkeypatch.setenv("ROCK_ENV_IMAGE_ROOTS", str(private))
        with pytest.raises(ImageNotFound, match="not searchable by other users"):
            Sandbox(runtime="namespace", image=str(private / "rootfs")).start()
    finally:
        shutil.rmtree(private)


def test_missing_rootfs_is_image_not_found(sandbox_state: Path) -> None:
    with pytest.raises(ImageNotFound, match="does not exist"):
        Sandbox(runtime="namespace", image="/nonexistent/rootfs").start()


def test_unbuilt_image_name_is_image_not_found(
    sandbox_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCK_ENV_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ImageNotFound, match="build-base"):
        Sandbox(runtime="namespace", image="rock-env/never-built:1").start()


@pytest.mark.slow
def test_base_image_rootfs_built_without_a_registry(sandbox_state: Path) -> None:
    from rock_env.sandbox.image import DEFAULT_IMAGE_NAME, build_base_image

    build_base_image(DEFAULT_IMAGE_NAME, docker=False)  # cached after the first build (debootstrap)
    with Sandbox(runtime="namespace", image=DEFAULT_IMAGE_NAME) as sb:
        result = sb.run("grep VERSION_CODENAME /etc/os-release; python3 -c 'print(6 * 7)'; git --version | cut -c1-11")
        assert result.output == "VERSION_CODENAME=bookworm\n42\ngit version\n"
        assert sb.run("ls /root /home 2>&1; wc -c < /etc/shadow").output.splitlines()[-1] == "0"
        assert "var" in sb.run("ls /").output.split()


def test_secret_list_is_cached_until_a_secret_appears(tmp_path: Path) -> None:
    from rock_env.sandbox.runtimes.namespace.rootfs import _secret_stamp, _secrets_in

    etc = tmp_path / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    assert _secrets_in(str(etc), _secret_stamp(etc)) == ((), ())
    (etc / "shadow").write_text("root:x:1::::::\n")
    (etc / "ssh" / "ssh_host_ed25519_key").write_text("key")
    (etc / "sudoers.d").mkdir()
    files, dirs = _secrets_in(str(etc), _secret_stamp(etc))
    assert set(files) == {"shadow", "ssh/ssh_host_ed25519_key"} and dirs == ("sudoers.d",)
