"""The docker runtime against the real Docker daemon and the locally built base image.

The base image comes from ``rock-env image build-base`` (debootstrap, cached on disk across
runs): the first run on a fresh machine builds it (about 1-2 minutes), later runs reuse it.
Every test checks that the containers it created are gone afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.errors import (
    ConfigError,
    ImageNotFound,
    PathOutsideSandbox,
    SandboxClosed,
    SandboxFileNotFound,
    SnapshotNotFound,
)
from rock_env.sandbox import AsyncSandbox, Sandbox, SandboxConfig, mounts
from rock_env.sandbox.gc import collect, reap_dir
from rock_env.sandbox.runtimes.docker import (
    DROPPED_CAPS,
    LABEL_OWNER,
    LABEL_SANDBOX,
    DockerRuntime,
    docker_api,
    reap_containers,
)
from rock_env.sandbox.sdk import new_sandbox_id
from rock_env.sandbox.state import SandboxRecord
from tests.sandbox.dockerutil import MakeSandbox, SandboxFactory, bare_runtime

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", autouse=True)
def private_state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep this module's sandbox records in a private state root; fail if any is left behind."""
    root = tmp_path_factory.mktemp("docker-sandbox-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROCK_ENV_SANDBOX_STATE", str(root))
        yield root
    assert not mounts.mounted_below(root)
    assert sorted(p.name for p in root.iterdir()) == []


def containers_of(sandbox_id: str) -> list[dict[str, object]]:
    """Containers (running or not) labelled with a sandbox id."""
    result: list[dict[str, object]] = docker_api().containers(
        all=True, filters={"label": f"{LABEL_SANDBOX}={sandbox_id}"}
    )
    return result


def wait_gone(sandbox_id: str, timeout: float = 10.0) -> bool:
    """Wait until no container of the sandbox exists (auto-removal is asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not containers_of(sandbox_id):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def make_sandbox(docker_image: str) -> Iterator[MakeSandbox]:
    """Factory of started docker sandboxes; stops them and checks their containers are gone."""
    make = SandboxFactory(runtime="docker", image=docker_image)
    yield make
    make.stop_all()
    for sb in make.made:
        assert wait_gone(sb.id), f"container of {sb.id} still exists after stop()"
        assert not sb.state_dir.exists()


@pytest.fixture(scope="module")
def shared(docker_image: str) -> Iterator[Sandbox]:
    """One sandbox shared by the read-mostly tests of this module (each uses its own paths/sessions)."""
    sb = Sandbox(runtime="docker", image=docker_image)
    sb.start()
    yield sb
    sb.stop()
    assert wait_gone(sb.id)


# --- sessions and commands ---------------------------------------------------------------


def test_session_keeps_cwd_variables_and_functions(shared: Sandbox) -> None:
    shared.create_session("persist")
    assert shared.run("mkdir -p /tmp/p && cd /tmp/p && export GREETING=hello", session="persist").exit_code == 0
    assert shared.run('f() { echo "f:$1"; }', session="persist").exit_code == 0
    result = shared.run('pwd; echo "$GREETING"; f x', session="persist")
    assert result.output == "/tmp/p\nhello\nf:x\n"
    assert result.exit_code == 0
    # another session does not see them
    shared.create_session("other", env={"ONLY_HERE": "1"}, cwd="/tmp")
    other = shared.run('pwd; echo "${GREETING:-unset} $ONLY_HERE"', session="other")
    assert other.output == "/tmp\nunset 1\n"
    shared.close_session("persist")
    shared.close_session("other")


def test_exit_codes_and_merged_stderr(shared: Sandbox) -> None:
    result = shared.run("echo out; echo err >&2; (exit 7)")
    assert result.exit_code == 7
    assert result.output == "out\nerr\n"
    assert shared.run("false").exit_code == 1
    assert shared.run("echo $((6 * 7))").output == "42\n"


def test_default_session_runs_in_workdir_with_clean_env(shared: Sandbox) -> None:
    result = shared.run('pwd; echo "$HOME"; env | sort | cut -d= -f1 | tr "\\n" " "')
    lines = result.output.splitlines()
    assert lines[0] == "/workspace"
    assert lines[1] == "/workspace"
    names = set(lines[2].split())
    assert {"PATH", "HOME", "LANG"} <= names
    assert not any(name.startswith("DOCKER") for name in names)


def test_command_timeout_kills_group_and_session_survives(shared: Sandbox) -> None:
    shared.create_session("timeouts")
    shared.run("export KEEP=yes", session="timeouts")
    started = time.monotonic()
    result = shared.run("sleep 100 & sleep 100", session="timeouts", timeout=1.0)
    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code is None
    after = shared.run('echo "$KEEP"; pgrep -c -f "^sleep 100" || true', session="timeouts")
    # bash may add a job notice ("Killed  sleep 100") for the killed background job
    assert [line for line in after.output.splitlines() if "Killed" not in line] == ["yes", "0"]
    assert not after.session_restarted
    shared.close_session("timeouts")


def test_shell_builtin_loop_restarts_the_session(shared: Sandbox) -> None:
    shared.create_session("loop")
    result = shared.run("while :; do :; done", session="loop", timeout=1.0)
    assert result.timed_out and result.session_restarted
    assert shared.run("echo back", session="loop").output == "back\n"
    shared.close_session("loop")


@pytest.mark.parametrize("session", [None, "intr"])
def test_interrupt_stops_the_running_command(make_sandbox: MakeSandbox, session: str | None) -> None:
    # None: the default session, which runs in the container's spare shell (no docker exec)
    sb = make_sandbox()
    if session is not None:
        sb.create_session(session)
    status = sb.run("cat /proc/$$/status", session=session).output
    ignored = int(re.search(r"SigIgn:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    assert not ignored & (1 << (signal.SIGINT - 1)), "the session must not start with SIGINT ignored"
    pid = sb.run("echo $$", session=session).output
    timer = threading.Timer(0.5, sb.interrupt, args=(session,))
    timer.start()
    started = time.monotonic()
    result = sb.run("sleep 30", session=session)
    timer.join()
    assert time.monotonic() - started < 10
    assert result.exit_code == 130 and result.interrupted
    # the session survived Ctrl-C (same shell, still usable)
    assert sb.run("echo $$", session=session).output == pid


def test_exec_one_shot(shared: Sandbox) -> None:
    result = shared.exec(
        ["python3", "-c", "import os, sys; print(os.getcwd(), os.environ['V'], sys.stdin.read())"],
        cwd="/tmp",
        env={"V": "v1"},
        stdin="from stdin",
    )
    assert result.exit_code == 0
    assert result.output == "/tmp v1 from stdin\n"
    assert shared.exec("exit 3").exit_code == 3
    timed = shared.exec("sleep 60", timeout=0.5)
    assert timed.timed_out and timed.exit_code is None


def test_background_process_and_stream(shared: Sandbox) -> None:
    proc = shared.spawn("echo started; sleep 0.3; echo finished; exit 5")
    assert proc.pid is not None and proc.pid > 1
    assert proc.wait(20) == 5
    assert proc.output() == "started\nfinished\n"
    sleeper = shared.spawn(["sleep", "100"])
    assert sleeper.running
    sleeper.kill()
    assert sleeper.wait(10) == 137
    chunks = list(shared.stream("for i in 1 2 3; do echo $i; sleep 0.1; done"))
    assert "".join(chunks) == "1\n2\n3\n"


def test_round_trip_is_fast_enough_to_use(shared: Sandbox) -> None:
    # not a timing assertion on the target (see benchmarks/): only that nothing sleeps or polls
    shared.run("true")
    started = time.monotonic()
    for _ in range(50):
        assert shared.run("true").exit_code == 0
    assert time.monotonic() - started < 5


# --- files and snapshots -----------------------------------------------------------------


def test_files_round_trip(shared: Sandbox, tmp_path: Path) -> None:
    shared.write_file("files/hello.txt", "héllo\n")
    payload = bytes(range(256)) * 10
    shared.write_file("/tmp/files/blob.bin", payload)
    assert shared.read_file("files/hello.txt") == "héllo\n"
    assert shared.read_file("/tmp/files/blob.bin", binary=True) == payload
    assert shared.run("cat files/hello.txt").output == "héllo\n"
    entries = {e.name: e for e in shared.list_dir("files")}
    assert entries["hello.txt"].type == "file"
    assert entries["hello.txt"].size == len("héllo\n".encode())
    assert entries["hello.txt"].mtime > time.time() - 600
    shared.run("ln -s /etc files/link && mkdir files/sub")
    kinds = {e.name: e.type for e in shared.list_dir("files")}
    assert kinds == {"hello.txt": "file", "link": "symlink", "sub": "dir"}
    # /tmp is the sandbox's too; the image's directories and the container's /proc are not the file API's
    assert [e.name for e in shared.list_dir("/tmp/files")] == ["blob.bin"]
    for outside in ("/etc", "/proc", "files/link"):
        with pytest.raises(PathOutsideSandbox, match="outside"):
            shared.list_dir(outside)
    # upload and download a directory tree
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "c.txt").write_text("deep")
    (src / "top.txt").write_text("top")
    shared.upload(src, "uploaded")
    assert shared.run("cat uploaded/a/b/c.txt uploaded/top.txt").output == "deeptop"
    shared.download("uploaded", tmp_path / "back")
    assert (tmp_path / "back" / "a" / "b" / "c.txt").read_text() == "deep"


def test_file_errors(shared: Sandbox) -> None:
    with pytest.raises(SandboxFileNotFound):
        shared.read_file("no/such/file")
    with pytest.raises(SandboxFileNotFound):
        shared.list_dir("no-such-dir")
    with pytest.raises(PathOutsideSandbox):
        shared.read_file("../etc/passwd")


def test_snapshot_and_restore(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    sb.run("mkdir -p src && echo v1 > src/main.py && echo keep > notes.txt")
    snap = sb.snapshot()
    sb.run("echo v2 > src/main.py && rm notes.txt && echo new > extra.txt && mkdir junk && ln -s /etc junk/etc")
    sb.restore(snap)
    assert sb.run("cat src/main.py notes.txt; ls -A").output == "v1\nkeep\nnotes.txt\nsrc\n"
    # restore twice from the same snapshot
    sb.run("rm -rf src")
    sb.restore(snap)
    assert sb.read_file("src/main.py") == "v1\n"
    with pytest.raises(SnapshotNotFound):
        sb.restore("snap-unknown")


# --- isolation, limits and bad input -----------------------------------------------------


def test_container_is_labelled_unprivileged_and_offline(shared: Sandbox) -> None:
    (info,) = containers_of(shared.id)
    labels = info["Labels"]
    assert labels[LABEL_SANDBOX] == shared.id  # type: ignore[index]
    assert labels[LABEL_OWNER].split("/")[1] == str(os.getpid())  # type: ignore[index]
    inspect = docker_api().inspect_container(info["Id"])
    host = inspect["HostConfig"]
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert set(DROPPED_CAPS) <= set(host["CapDrop"])
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] > 0
    # inside: only the loopback interface, no raw sockets, no mount
    assert shared.run("ls /sys/class/net").output.split() == ["lo"]
    status = shared.run("cat /proc/self/status").output
    caps = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    assert not caps & (1 << 21)  # CAP_SYS_ADMIN
    assert not caps & (1 << 13)  # CAP_NET_RAW
    assert shared.run("mount -t tmpfs none /mnt").exit_code != 0
    net = shared.exec(["python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)"])
    assert net.exit_code != 0
    assert "unreachable" in net.output.lower()


def test_network_on_request(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(network=True)
    assert "eth0" in sb.run("ls /sys/class/net").output.split()


def test_nonexistent_image_is_a_typed_error(docker_image: str) -> None:
    sb = Sandbox(runtime="docker", image="rock-env/no-such-image:0")
    with pytest.raises(ImageNotFound, match="build-base"):
        sb.start()
    sb.stop()
    assert containers_of(sb.id) == []
    assert not sb.state_dir.exists()


def test_malformed_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="memory"):
        SandboxConfig(runtime="docker", memory="8gb?")
    with pytest.raises(ConfigError):
        Sandbox(runtime="docker", cpus=-1)


def test_never_ending_and_flooding_commands(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(output_limit=64 * 1024)
    flood = sb.run("yes flood | head -c 20000000", timeout=60)
    assert flood.exit_code == 0
    assert flood.truncated and flood.output_bytes == 20_000_000
    assert "output truncated" in flood.output
    assert len(flood.output) < 70 * 1024
    endless = sb.run("yes", timeout=1.0)
    assert endless.timed_out and endless.truncated
    assert sb.run("echo fine").output == "fine\n"


def test_binary_output(shared: Sandbox) -> None:
    result = shared.run("head -c 4096 /dev/urandom; printf '\\x00\\xff\\xfe end'")
    assert result.exit_code == 0
    assert result.output.endswith(" end")
    assert result.output_bytes == 4096 + 7  # \x00 \xff \xfe and " end"


def _pids_cgroup(container_id: str) -> Path:
    """The container's pids cgroup directory on the host (cgroup v1 or v2 layouts)."""
    for candidate in (
        Path(f"/sys/fs/cgroup/pids/docker/{container_id}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope"),
        Path(f"/sys/fs/cgroup/docker/{container_id}"),
    ):
        if (candidate / "pids.max").exists():
            return candidate
    raise AssertionError(f"no pids cgroup found for container {container_id}")


def test_fork_bomb_is_contained(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(pids=64)
    cgroup = _pids_cgroup(str(containers_of(sb.id)[0]["Id"]))
    assert (cgroup / "pids.max").read_text().strip() == "64"
    bomb = sb.spawn("bomb() { bomb | bomb & }; bomb; sleep 100")
    peak = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        peak = max(peak, int((cgroup / "pids.current").read_text()))
        time.sleep(0.05)
    assert 32 < peak <= 64, peak  # it did fork up to the limit, and not beyond
    # the host is fine (it can still start processes); the sandbox too: the next command frees it (the
    # bomb's orphans are outside the handle's tree, the runtime kills them through the container's cgroup)
    assert subprocess.run(["true"], check=False).returncode == 0
    bomb.kill()
    started = time.monotonic()
    assert sb.run("echo alive; ls -d /", timeout=30).output == "alive\n/\n"
    assert time.monotonic() - started < 5


def test_memory_hog_is_oom_killed(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(memory="64m")
    result = sb.run("python3 -c \"b = b'x' * (512 << 20); print('ALLOC' + 'ATED')\"", timeout=60)
    assert result.exit_code == 137
    assert result.oom_killed
    assert "ALLOCATED" not in result.output
    assert sb.run("echo alive").output == "alive\n"


def test_writing_10_gb_hits_the_disk_limit(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(disk="16m")
    result = sb.run("head -c 10G /dev/zero > big.bin; echo rc=$?", timeout=60)
    # the tmpfs is full (ENOSPC) or the file reached RLIMIT_FSIZE (SIGXFSZ, 128 + 25): both at 16 MiB
    assert "No space left on device" in result.output or "File size limit exceeded" in result.output
    assert "rc=0" not in result.output
    assert int(sb.run("stat -c %s big.bin").output) <= 16 << 20
    # many smaller files cannot get around it: the workdir and /tmp share one 16 MiB tmpfs
    sb.run("rm big.bin")
    many = sb.run(
        "for i in $(seq 40); do head -c 1M /dev/zero > /tmp/f$i || break; head -c 1M /dev/zero > f$i || break; done"
    )
    assert "No space left on device" in many.output
    used = sb.run("find /workspace /tmp -type f -printf '%s\\n' | awk '{s += $1} END {print s}'").output
    assert int(used) <= 16 << 20
    assert sb.run("rm -f /tmp/f* f*; echo ok > after.txt && cat after.txt").output == "ok\n"


def test_full_disk_with_a_memory_limit_leaves_the_sandbox_usable(
    make_sandbox: MakeSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    # tmpfs pages count against the memory limit: the workspace gets at most half of it, so filling
    # it is ENOSPC instead of OOM kills of every process
    sb = make_sandbox(memory="128m", disk="1g")
    assert "get 67108864 bytes" in caplog.text
    result = sb.run("head -c 2G /dev/zero > big; echo rc=$?", timeout=60)
    assert "No space left on device" in result.output and "rc=1" in result.output
    assert not result.oom_killed
    assert sb.run("stat -c %s big").output == f"{64 << 20}\n"
    assert sb.run("rm big && echo alive").output == "alive\n"


def test_workspace_tmpfs_is_unmounted_and_reaped(docker_image: str, tmp_path: Path) -> None:
    sandbox_id = new_sandbox_id()
    state = tmp_path / sandbox_id
    runtime = DockerRuntime(SandboxConfig(image=docker_image, disk="8m"), sandbox_id, state)
    runtime.start()
    try:
        assert str(state / "fs") in mounts.mounted_below(state)
        assert SandboxRecord.load(state).mounts == [str(state / "fs")]  # type: ignore[union-attr]
    finally:
        runtime.stop()
    assert not mounts.mounted_below(state)
    assert not state.exists()
    assert wait_gone(sandbox_id)


# --- lifecycle and reaping ---------------------------------------------------------------


def test_absolute_ttl_is_enforced_inside_the_container(docker_image: str, tmp_path: Path) -> None:
    with bare_runtime(tmp_path, image=docker_image, ttl=1) as runtime:
        assert runtime.alive()
        assert wait_gone(runtime.sandbox_id, timeout=15), "the container outlived its ttl"
        assert not runtime.alive()


def test_ttl_kills_a_busy_default_session(docker_image: str, tmp_path: Path) -> None:
    # the spare shell runs in the foreground of the container's init script: the ttl watchdog must still win
    with bare_runtime(tmp_path, image=docker_image, ttl=2) as runtime:
        shell = runtime.initial_shell()
        assert shell is not None
        assert runtime.initial_shell() is None  # only once
        shell.write(b"echo up; sleep 100\n")
        assert shell.read(30) == b"up\n"
        assert shell.wait(20) is not None, "the ttl did not end the session's command"
        assert wait_gone(runtime.sandbox_id, timeout=15), "the container outlived its ttl"


@pytest.mark.parametrize("ttl", [300, None])
def test_sigkilled_owner_leaves_nothing(docker_image: str, tmp_path: Path, ttl: int | None) -> None:
    # the container ends by itself when its owner dies (the attach socket closes, stdin ends); with a
    # ttl, the per-sandbox reaper removes tmpfs and state dir at once, without one `rock-env sandbox gc` does
    state = tmp_path / "state"
    script = textwrap.dedent(
        f"""
        import os, signal, threading
        from rock_env.sandbox import Sandbox
        sb = Sandbox(runtime="docker", image={docker_image!r}, ttl={ttl!r})
        sb.start()
        assert sb.run("echo hi").output == "hi\\n"
        sb.spawn("sleep 300")
        threading.Thread(target=sb.run, args=("sleep 300",), daemon=True).start()
        print(sb.id, flush=True)
        threading.Event().wait(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "ROCK_ENV_SANDBOX_STATE": str(state)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sandbox_id = proc.stdout.strip()
    try:
        assert wait_gone(sandbox_id, timeout=30), "the container survived its SIGKILLed owner"
        if ttl is None:
            lines = collect(root=state)
            assert f"reaping {sandbox_id} (owner gone)" in lines
        deadline = time.monotonic() + 10
        while (state / sandbox_id).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (state / sandbox_id).exists()
        assert not mounts.mounted_below(state)
    finally:
        for item in containers_of(sandbox_id):
            docker_api().remove_container(item["Id"], force=True)
        if (state / sandbox_id).exists():
            reap_dir(state / sandbox_id)


def test_reap_containers_of_dead_owners(docker_image: str, tmp_path: Path) -> None:
    # the owner dies while a forked child still holds the attach socket (so the container keeps
    # running): the label gc finds it by its dead owner
    sandbox_id = new_sandbox_id()
    state = tmp_path / sandbox_id
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from rock_env.sandbox import SandboxConfig
        from rock_env.sandbox.runtimes.docker import DockerRuntime
        DockerRuntime(SandboxConfig(image={docker_image!r}), {sandbox_id!r}, Path({str(state)!r})).start()
        holder = os.fork()
        if holder == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)  # do not keep the test's pipes open
            time.sleep(120)
            os._exit(0)
        print(holder, flush=True)
        os._exit(0)  # the owner dies without stopping its sandbox
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=True, timeout=60, capture_output=True, text=True)
    holder = int(proc.stdout)
    try:
        assert len(containers_of(sandbox_id)) == 1
        preview = reap_containers(dry_run=True)
        assert any(sandbox_id in line and "owner gone" in line for line in preview)
        assert containers_of(sandbox_id), "dry_run must not remove anything"
        reap_containers()
        assert wait_gone(sandbox_id)
    finally:
        os.kill(holder, signal.SIGKILL)
        for item in containers_of(sandbox_id):
            docker_api().remove_container(item["Id"], force=True)
        reap_dir(state)  # the dead owner's tmpfs and state dir
    assert not mounts.mounted_below(state) and not state.exists()


def test_reap_keeps_live_sandboxes(shared: Sandbox) -> None:
    lines = reap_containers(dry_run=True)
    assert not any(shared.id in line for line in lines)
    assert shared.run("echo still here").output == "still here\n"


def test_reap_leaves_a_container_being_started(docker_image: str, tmp_path: Path) -> None:
    # between create and start a container is "created", not running: a concurrent gc must not take it
    sandbox_id = new_sandbox_id()
    runtime = DockerRuntime(SandboxConfig(image=docker_image), sandbox_id, tmp_path / sandbox_id)
    created = docker_api().create_container(docker_image, command=["true"], labels=runtime._labels())
    try:
        assert not any(sandbox_id in line for line in reap_containers(dry_run=True))
    finally:
        docker_api().remove_container(created["Id"], force=True)


def test_async_sandbox_on_docker(docker_image: str) -> None:
    async def main() -> str:
        async with AsyncSandbox(runtime="docker", image=docker_image) as sb:
            first, second = await asyncio.gather(sb.arun("echo $((6 * 7))"), sb.exec(["echo", "exec"]))
            assert (first.output, first.exit_code) == ("42\n", 0)
            assert second.output == "exec\n"
            await sb.write_file("a.txt", "async")
            assert await sb.read_file("a.txt") == "async"
            assert "".join([chunk async for chunk in sb.stream("echo a; echo b")]) == "a\nb\n"
            return sb.id

    sandbox_id = asyncio.run(main())
    assert wait_gone(sandbox_id)


def test_config_env_reaches_every_kind_of_process(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(env={"FROM_CONFIG": "c1", "HOME": "/tmp"})
    assert sb.run('echo "$FROM_CONFIG $HOME"').output == "c1 /tmp\n"  # default session (the spare shell)
    sb.create_session("second", env={"ONLY_SECOND": "s"})
    assert sb.run('echo "$FROM_CONFIG $ONLY_SECOND"', session="second").output == "c1 s\n"
    assert sb.exec('echo "$FROM_CONFIG"').output == "c1\n"
    assert sb.spawn(["printenv", "FROM_CONFIG"]).result(30).output == "c1\n"


def test_daemon_that_cannot_see_our_mounts(make_sandbox: MakeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. rock-env in a container given the host's Docker socket: no tmpfs binds, no host-side file access;
    # files, list_dir and snapshots go through the container instead, disk is RLIMIT_FSIZE per file
    import rock_env.sandbox.runtimes.docker.engine as docker_engine

    monkeypatch.setattr(docker_engine, "_shares_mounts", False)
    sb = make_sandbox(disk="8m")
    assert not mounts.mounted_below(sb.state_dir)
    sb.run("mkdir -p d && echo 1 > d/a && ln -s /etc d/l")
    assert {e.name: e.type for e in sb.list_dir("d")} == {"a": "file", "l": "symlink"}
    snap = sb.snapshot()
    sb.run("rm -r d && echo x > other")
    sb.restore(snap)
    assert sb.run("ls -A; cat d/a").output == "d\n1\n"
    big = sb.run("head -c 10G /dev/zero > big; echo rc=$?", timeout=60)
    assert "File size limit exceeded" in big.output and "rc=153" in big.output


def test_idle_ttl_reaps_an_unused_sandbox(docker_image: str) -> None:
    sb = Sandbox(runtime="docker", image=docker_image, idle_ttl=1)
    sb.start()
    try:
        assert sb.run("echo used").output == "used\n"
        assert wait_gone(sb.id, timeout=20), "the idle container was not reaped"
        deadline = time.monotonic() + 10
        while sb.state_dir.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sb.state_dir.exists()
        with pytest.raises(SandboxClosed):
            sb.run("echo too late")
    finally:
        sb.stop()
