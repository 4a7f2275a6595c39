"""The namespace runtime holds no host privilege: root inside is an unprivileged uid outside, and every limit recovers."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rock_env.sandbox import Sandbox, uids

pytestmark = pytest.mark.bwrap


def _host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_root_inside_is_an_unprivileged_uid_outside(ns: Sandbox) -> None:
    out = ns.run("id -u; cat /proc/self/uid_map | wc -l; grep -E 'CapBnd|CapPrm|CapEff' /proc/self/status").output
    lines = out.splitlines()
    assert lines[0] == "0"
    assert lines[1] == "1"  # exactly one uid is mapped
    assert all(line.split()[1] == "0000000000000000" for line in lines[2:])
    runtime = ns._rt()
    pid = runtime.host_pids[-1]  # the namespace's init, seen from the host
    uid = _host_uid(pid)
    if os.geteuid() == 0:
        assert uid != 0 and uid in uids.uid_range()
        assert runtime.host_uid == uid
    else:
        assert uid == os.geteuid()


def test_two_sandboxes_get_different_host_uids(ns: Sandbox, sandbox_state: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root gives each sandbox a uid of its own")
    with Sandbox(runtime="namespace") as other:
        other.run("true")
        assert other._rt().host_uid != ns._rt().host_uid


def test_uid_is_given_back_when_the_sandbox_stops(sandbox_state: Path) -> None:
    sb = Sandbox(runtime="namespace").start()
    runtime = sb._rt()
    uid = runtime.host_uid
    held = uids.pool_dir() / str(uid)
    assert os.geteuid() != 0 or held.exists()
    sb.stop()
    runtime.wait_stopped(10)
    assert not held.exists()


def test_global_proc_knobs_and_dev_are_read_only(ns: Sandbox) -> None:
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    current = before.strip()
    result = ns.run(
        f"echo '{current}' > /proc/sys/kernel/core_pattern; echo rc=$?; "
        "echo 1 > /proc/sys/vm/drop_caches; echo rc=$?; "
        "echo x > /dev/new-node; echo rc=$?; mknod /dev/sda2 b 8 2; echo rc=$?"
    )
    assert [line for line in result.output.splitlines() if line.startswith("rc=")] == ["rc=1"] * 4
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before
    assert ns.run("ls /dev").output.split() == sorted(
        [
            "core",
            "fd",
            "full",
            "null",
            "ptmx",
            "pts",
            "random",
            "shm",
            "stderr",
            "stdin",
            "stdout",
            "tty",
            "urandom",
            "zero",
        ]
    )


def test_no_nested_namespaces_no_mounts(ns: Sandbox) -> None:
    result = ns.run("unshare -r true; echo rc=$?; unshare -m true; echo rc=$?; mount -t tmpfs x /mnt; echo rc=$?")
    assert [line for line in result.output.splitlines() if line.startswith("rc=")] == ["rc=1", "rc=1", "rc=32"]


def test_dev_shm_and_var_tmp_count_against_disk(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", disk="32m") as sb:
        shm = sb.run("head -c 100M /dev/zero > /dev/shm/big; echo rc=$?; du -m /dev/shm/big | cut -f1")
        assert "rc=1" in shm.output and int(shm.output.split()[-1]) <= 32
        tmp = sb.run("head -c 100M /dev/zero > /var/tmp/big; echo rc=$?; du -m /tmp/big | cut -f1")
        assert "rc=1" in tmp.output and int(tmp.output.split()[-1]) <= 32


def test_files_the_sdk_writes_belong_to_root_inside(ns: Sandbox) -> None:
    ns.write_file("deep/dir/a.txt", "sdk")
    ns.upload(Path(__file__).parent / "__init__.py", "up/init.py")
    snap = ns.snapshot()
    ns.run("rm -rf deep up")
    ns.restore(snap)
    result = ns.run(
        "stat -c '%u %n' deep deep/dir deep/dir/a.txt up up/init.py; echo more >> deep/dir/a.txt && echo ok"
    )
    assert result.output.splitlines() == ["0 deep", "0 deep/dir", "0 deep/dir/a.txt", "0 up", "0 up/init.py", "ok"]
    assert ns.read_file("deep/dir/a.txt") == "sdkmore\n"


def test_kill_of_every_process_leaves_the_sandbox_usable(ns: Sandbox) -> None:
    ns.create_session("other")
    ns.run("sleep 300 &", session="other")
    ns.run("kill -9 -1; kill -9 1; echo sent")
    assert ns.alive()
    assert ns.run("echo still-here").output == "still-here\n"
    again = ns.run("echo other-back", session="other")
    assert again.output == "other-back\n" and again.session_restarted
    assert ns.exec("echo exec-ok").output == "exec-ok\n"


@pytest.mark.parametrize("background", [False, True])
def test_fork_bomb_leaves_the_sandbox_usable(sandbox_state: Path, background: bool) -> None:
    bomb = ":(){ :|:& };:"
    with Sandbox(runtime="namespace", pids=64) as sb:
        sb.run(f"({bomb}) & sleep 1" if background else bomb, timeout=3)
        started = time.monotonic()
        result = sb.run("ls / >/dev/null && echo works", timeout=20)
        # a bomb still running in the background may add its own complaints around the output
        assert "works" in result.output.splitlines() and time.monotonic() - started < 10  # not bash's fork retry (15 s)
        assert "exec-works" in sb.exec("echo exec-works", timeout=20).output.splitlines()
        sb.create_session("fresh")
        assert "fresh-works" in sb.run("echo fresh-works", session="fresh", timeout=20).output.splitlines()
        time.sleep(1)  # now the bomb holds every pid: the next command frees the sandbox first
        assert sb.run("ls / >/dev/null && echo works", timeout=20).output.splitlines()[-1] == "works"


def test_oom_killed_when_any_process_of_the_command_was_killed(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", memory="128m") as sb:
        result = sb.run("python3 -c 'bytearray(1 << 30)'; echo rc=$?")
        assert result.exit_code == 0 and "rc=137" in result.output
        assert result.oom_killed
        assert not sb.run("echo fine").oom_killed
        assert sb.exec("python3 -c 'bytearray(1 << 30)'; true").oom_killed


def test_kill_from_a_one_shot_command_then_run_gets_a_fresh_shell(ns: Sandbox) -> None:
    for _ in range(10):
        ns.run("true")
        ns.exec(["/bin/kill", "-9", "-1"])
        result = ns.run("echo ok")
        assert result.output == "ok\n", result


def test_sandboxes_start_from_many_threads_at_once(sandbox_state: Path) -> None:
    def one(_: int) -> str:
        with Sandbox(runtime="namespace") as sb:
            return sb.run("echo hi").output

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(one, range(18))) == {"hi\n"}
