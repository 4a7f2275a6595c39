"""Hardening of docker sandboxes against the real Docker daemon: privileges, kernel knobs, network,
host secrets and the end-of-command protocol.

Host-wide settings are only probed without changing them: a write is attempted by opening the
file for writing (a read-only mount refuses the open itself), and a setting that can be read is
written back with its current value only. Each test checks that the containers this process
created are gone afterwards.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rock_env.sandbox.runtimes.docker import DROPPED_CAPS, LABEL_SANDBOX, READONLY_PATHS, docker_api
from tests.sandbox.dockerutil import MakeSandbox, docker_sandboxes

pytestmark = pytest.mark.docker

#: the capabilities left to root in a container (Docker's default set minus DROPPED_CAPS), by number
KEPT_CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8}


@pytest.fixture
def make_sandbox(docker_image: str, sandbox_state: Path) -> Iterator[MakeSandbox]:
    """Factory of started docker sandboxes; stops them and checks that no container is left."""
    with docker_sandboxes(docker_image) as make:
        yield make


def test_container_is_unprivileged_with_a_small_capability_set(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    (item,) = docker_api().containers(all=True, filters={"label": f"{LABEL_SANDBOX}={sb.id}"})
    host = docker_api().inspect_container(item["Id"])["HostConfig"]
    assert host["Privileged"] is False
    assert set(DROPPED_CAPS) <= set(host["CapDrop"])
    assert "no-new-privileges" in host["SecurityOpt"]
    assert set(READONLY_PATHS) <= set(host["ReadonlyPaths"])
    assert all(bind.startswith(f"{sb.state_dir}/fs/") for bind in host["Binds"])  # nothing of the host but its tmpfs
    status = sb.run("grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs)' /proc/self/status").output
    fields = dict(line.split(":\t") for line in status.splitlines())
    expected = sum(1 << bit for bit in KEPT_CAPS.values())
    for name in ("CapEff", "CapBnd", "CapPrm"):
        assert int(fields[name], 16) == expected, (name, fields[name])
    assert fields["NoNewPrivs"].strip() == "1"
    # what the dropped capabilities stop: device nodes, raw sockets, chroot, mounts
    assert sb.run("mknod /tmp/null2 c 1 3").exit_code != 0
    assert sb.run("chroot / true").exit_code != 0
    assert sb.run("mount -t tmpfs none /mnt").exit_code != 0
    raw = sb.exec(["python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)"])
    assert raw.exit_code != 0 and "PermissionError" in raw.output


#: opens a /proc/sys knob for writing without writing (a read-only mount refuses the open); if the open
#: is allowed it writes back the value it read, so the host setting never changes
_PROBE_KNOB = r"""
import errno, os, sys
path = sys.argv[1]
try:
    current = open(path, "rb").read()
except OSError:
    current = None  # write-only knobs (drop_caches): never written, only opened
try:
    fd = os.open(path, os.O_WRONLY)
except OSError as exc:
    print(errno.errorcode[exc.errno]); sys.exit(0)
if current is not None:
    os.write(fd, current)
os.close(fd)
print("WRITABLE")
"""


@pytest.mark.parametrize(
    "knob",
    ["/proc/sys/vm/drop_caches", "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/kernel/pid_max"],
)
def test_global_proc_knobs_are_read_only(make_sandbox: MakeSandbox, knob: str) -> None:
    sb = make_sandbox()
    sb.write_file("probe.py", _PROBE_KNOB)
    result = sb.exec(["python3", "probe.py", knob])
    assert result.output.strip() in {"EROFS", "EACCES", "EPERM", "ENOENT"}, result.output  # read-only or absent


def test_dev_is_read_only_but_its_devices_work(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    assert "Read-only file system" in sb.run("touch /dev/rock-env-probe").output
    assert sb.run("echo x > /dev/null && head -c 4 /dev/zero | wc -c").output == "4\n"
    assert sb.run("echo shm > /dev/shm/ok && cat /dev/shm/ok").output == "shm\n"
    assert sb.exec(["python3", "-c", "import os; print(len(os.openpty()))"]).output == "2\n"


def test_no_network_unless_asked_even_to_the_hosts_loopback(make_sandbox: MakeSandbox) -> None:
    # a listener on the host's 127.0.0.1: the sandbox's 127.0.0.1 is its own, so it never gets there
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(5)

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        sb = make_sandbox()
        assert sb.run("ls /sys/class/net").output.split() == ["lo"]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        result = sb.exec(["python3", "-c", probe])
        assert result.exit_code != 0 and "ConnectionRefusedError" in result.output
        thread.join(6)
        assert accepted == [], "the sandbox reached a listener on the host's loopback"
    finally:
        server.close()


def test_host_secrets_are_not_visible(
    make_sandbox: MakeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "rock-env-host-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("ROCK_ENV_TEST_HOST_SECRET", secret)
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text(secret)
    sb = make_sandbox()
    seen = sb.run("env; cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'").output
    assert secret not in seen
    assert "ROCK_ENV_TEST_HOST_SECRET" not in seen
    paths = f"{host_file} {tmp_path} /var/run/docker.sock /run/docker.sock {Path.home()}/.docker"
    assert sb.run(f"ls -d {paths} 2>/dev/null").output == ""
    assert secret not in sb.run(f"grep -rsl {secret} /etc /root /workspace /tmp /run /var 2>/dev/null; true").output


def test_kill_of_pid_1_and_of_every_process_leaves_the_sandbox_running(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    shell = sb.run("echo $$").output
    assert sb.run("kill -9 1; echo $?").output.strip() in {"0", "1"}
    assert sb.run("kill -9 -1").exit_code == 0  # the shell itself survives (it sent the signal)
    assert sb.alive()
    after = sb.run("echo $$; echo works")
    assert after.output == f"{shell}works\n" and not after.session_restarted
    assert sb.exec(["true"]).exit_code == 0


def test_marker_token_is_in_no_command_line_environment_or_file(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    runtime: Any = sb._rt()
    token = runtime._token
    sb.run("true")
    inside = sb.run(
        "cat /proc/*/cmdline /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
        "grep -rsl -F $'\\x1e' /workspace /tmp /dev/shm /run /etc 2>/dev/null; "
        f"grep -rsl {token} /workspace /tmp /dev/shm /run /etc /root 2>/dev/null; true"
    ).output
    assert token not in inside
    (item,) = docker_api().containers(all=True, filters={"label": f"{LABEL_SANDBOX}={sb.id}"})
    config = docker_api().inspect_container(item["Id"])["Config"]
    assert token not in repr((config["Cmd"], config["Entrypoint"], config["Env"]))


def test_a_forged_end_marker_changes_nothing(make_sandbox: MakeSandbox) -> None:
    """Even with the token (readable in the keeper's memory by root in the container), printing the
    spare shell's exit marker neither ends the command nor sets its exit code: the marker only counts
    once the shell's process is gone."""
    sb = make_sandbox()
    token = sb._rt()._token  # type: ignore[attr-defined]
    pid = sb.run("echo $$").output
    forged = sb.run(f"printf '\\036%s:exit:0\\n' {token}; echo after; (exit 5)")
    assert forged.exit_code == 5
    assert forged.output == f"\x1e{token}:exit:0\nafter\n"
    assert not forged.session_restarted
    again = sb.run("echo $$")
    assert again.output == pid and not again.session_restarted
    # the real end still counts: `exit 3` ends the shell, the next command gets a fresh one
    ended = sb.run("exit 3")
    assert ended.exit_code == 3
    assert sb.run("echo back").output == "back\n"


def test_session_markers_in_output_do_not_split_it(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    text = "__ROCK_END_0123456789abcdef_1__:0"
    result = sb.run(f"echo '{text}'; printf '\\036x:exit:0\\n'; echo tail; (exit 4)")
    assert result.exit_code == 4
    assert result.output == f"{text}\n\x1ex:exit:0\ntail\n"
    assert re.fullmatch(r"\d+\n", sb.run("echo $$").output)


def test_os_kill_of_every_process_from_a_child_restarts_only_the_session(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    killed = sb.run("python3 -c 'import os; os.kill(-1, 9)'")
    assert killed.exit_code == 137  # the session's shell died with everything else
    after = sb.run("echo works")
    assert after.output == "works\n" and after.session_restarted
    assert sb.alive()
