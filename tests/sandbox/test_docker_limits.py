"""Limits of docker sandboxes that always recover, against the real Docker daemon.

After a fork bomb, a pids-limit hit, a kill of every process, a memory bomb or a timeout, the next
command works within seconds, and a second ("canary") sandbox running at the same time is not
affected. ``oom_killed`` reports an OOM kill of any process of a command. Every writable place is
bounded by ``disk``. Each test checks that the containers this process created are gone afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rock_env.sandbox import Sandbox
from rock_env.sandbox.runtimes.docker import docker_api
from tests.sandbox.dockerutil import MakeSandbox, bare_runtime, docker_sandboxes

pytestmark = pytest.mark.docker

MiB = 1 << 20


@pytest.fixture
def make_sandbox(docker_image: str, sandbox_state: Path) -> Iterator[MakeSandbox]:
    """Factory of started docker sandboxes; stops them and checks that no container is left."""
    with docker_sandboxes(docker_image) as make:
        yield make


# --- OOM ---------------------------------------------------------------------------------


def test_oom_kill_of_a_process_that_is_not_the_last_is_reported(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(memory="128m")
    bomb = 'python3 -c "bytearray(10**10)"; echo "rc=$?"'
    result = sb.run(bomb, timeout=60)
    assert result.exit_code == 0 and "rc=137" in result.output  # the command's last process is echo
    assert result.oom_killed
    assert not sb.run("echo fine").oom_killed
    one_shot = sb.exec(bomb, timeout=60)
    assert one_shot.exit_code == 0 and "rc=137" in one_shot.output and one_shot.oom_killed
    runtime: Any = sb._rt()
    assert runtime.oom_kills() >= 2  # the container's memory cgroup counts every kill


# --- limits that recover -----------------------------------------------------------------

#: attack -> command (run with a 5 s timeout) in a sandbox with pids=64, memory=256m, cpus=0.5
ATTACKS = {
    "fork bomb": ":(){ :|:& };:",
    "fork bomb that waits": "bomb() { bomb | bomb & }; bomb; sleep 100",
    "pids limit hit": "for i in $(seq 100); do sleep 1000 & done 2>/dev/null; echo started",
    "kill every process": "python3 -c 'import os; os.kill(-1, 9)'",
    "kill every process from the shell": "kill -9 -1",
    "memory bomb": "python3 -c 'b = bytearray(1 << 30)'",
    "memory bomb in the shell": "x=$(head -c 600M /dev/zero | tr '\\0' x); echo ${#x}",
    "timeout": "sleep 100",
    "busy shell": "while :; do :; done",
}


def own_lines(output: str) -> list[str]:
    """The lines of a command's output without the fork failures a fork bomb's processes print."""
    return [line for line in output.splitlines() if "Resource temporarily unavailable" not in line]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("session", [None, "second"])
def test_next_command_works_within_seconds(make_sandbox: MakeSandbox, attack: str, session: str | None) -> None:
    sb = make_sandbox(pids=64, memory="256m", cpus=0.5)
    if session is not None:
        sb.create_session(session)
    assert sb.run("echo ready", session=session).output == "ready\n"
    sb.run(ATTACKS[attack], session=session, timeout=5)
    started = time.monotonic()
    first = sb.run("echo alive; ls -d /", session=session, timeout=30)
    took = time.monotonic() - started
    # what a fork bomb's processes print until they are killed shows among the output, as on a terminal
    assert first.exit_code == 0 and own_lines(first.output) == ["alive", "/"], first
    assert took < 5, took
    second = sb.run("echo again; ls -d /", session=session, timeout=30)
    assert second.exit_code == 0 and own_lines(second.output) == ["again", "/"], second
    assert sb.exec(["echo", "exec"]).output == "exec\n"
    # a fork bomb's orphans may still be growing (they are killed once the sandbox is at its pids
    # limit): a while later, the next command leaves nothing of the attack
    time.sleep(2)
    assert sb.run("echo settled", session=session, timeout=30).output.endswith("settled\n")
    runtime: Any = sb._rt()
    current, limit = runtime.cgroups().pids_in_use()
    assert limit == 64 and current < 16, current


def test_canary_sandbox_is_unaffected_by_a_fork_bomb_next_door(make_sandbox: MakeSandbox) -> None:
    canary = make_sandbox(cpus=0.5)
    canary.write_file("canary.txt", "tweet")
    victim = make_sandbox(pids=64, cpus=0.5, memory="256m")
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():  # keep the victim at its pids limit the whole time
            victim.run("bomb() { bomb | bomb & }; bomb; sleep 100", timeout=3)

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        victim_groups: Any = victim._rt()
        assert victim_groups.cgroups().limit_hits() > 0, "the bomb did not reach the limit"
        slowest = 0.0
        for i in range(10):
            started = time.monotonic()
            result = canary.run(f"echo {i}; cat canary.txt; ls -d / >/dev/null", timeout=30)
            slowest = max(slowest, time.monotonic() - started)
            assert (result.output, result.exit_code) == (f"{i}\ntweet", 0)
        assert slowest < 5, slowest
        canary_rt: Any = canary._rt()
        current, _ = canary_rt.cgroups().pids_in_use()
        assert current < 16 and canary_rt.cgroups().limit_hits() == 0
    finally:
        stop.set()
        thread.join(30)
    assert victim.run("echo alive", timeout=30).output.endswith("alive\n")


# --- disk --------------------------------------------------------------------------------

#: every place a program writes scratch data; with HOME the workdir
PLACES = ["/workspace", "/tmp", "/dev/shm", "/var/tmp", "$HOME"]


def _fill(sb: Sandbox, place: str) -> int:
    """Write 1 MiB files into ``place`` until the disk is full; the bytes written there."""
    script = (
        f"mkdir -p {place}/fill && i=0; while head -c 1M /dev/zero > {place}/fill/$i 2>/dev/null; do i=$((i+1)); "
        f"[ $i -lt 400 ] || break; done; cat {place}/fill/* | wc -c"
    )
    return int(sb.run(script, timeout=120).output.split()[-1])


def test_disk_fill_is_bounded_in_every_writable_place(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(disk="64m")
    assert sb.run('echo "$HOME"').output == "/workspace\n"
    for place in PLACES:
        written = _fill(sb, place)
        assert 32 * MiB < written <= 64 * MiB, (place, written)
        assert sb.run(f"rm -rf {place}/fill && echo ok").output == "ok\n"
    # they share one tmpfs: filling them all together still stops at 64 MiB
    total = sum(_fill(sb, place) for place in ["/workspace", "/tmp", "/dev/shm"])
    assert total <= 64 * MiB, total
    assert sb.run("rm -rf /workspace/fill /tmp/fill /dev/shm/fill; echo ok > after && cat after").output == "ok\n"
    # /var/tmp is /tmp (as on the namespace runtime); /dev itself is read-only
    assert sb.run("echo same > /tmp/x && cat /var/tmp/x").output == "same\n"
    assert "Read-only file system" in sb.run("head -c 1M /dev/zero > /dev/fill").output
    # elsewhere in the image (/root, ...) one file cannot pass the limit (RLIMIT_FSIZE)
    big = sb.run("head -c 100M /dev/zero > /root/big; echo rc=$?; stat -c %s /root/big; rm -f /root/big")
    assert "rc=153" in big.output and f"{64 * MiB}\n" in big.output


def test_shm_without_the_tmpfs_is_at_most_disk(make_sandbox: MakeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # a daemon that cannot see our mounts: /dev/shm is Docker's, sized at most `disk` (not its 64 MiB default)
    import rock_env.sandbox.runtimes.docker.engine as engine

    monkeypatch.setattr(engine, "_shares_mounts", False)
    sb = make_sandbox(disk="16m")
    assert sb.run("df -k --output=size /dev/shm | tail -1").output.strip() == str(16 * 1024)
    assert 8 * MiB < _fill(sb, "/dev/shm") <= 16 * MiB


def test_storage_quota_refused_by_the_daemon_falls_back(
    make_sandbox: MakeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # overlay2 caps a container's writable layer only on xfs with pquota: a daemon that refuses the
    # quota is asked again without it, and the quota is not tried again
    import rock_env.sandbox.runtimes.docker.runtime as runtime_module

    info = docker_api().info()
    if dict(info.get("DriverStatus") or []).get("Backing Filesystem") == "xfs":
        pytest.skip("this daemon may accept the quota")
    monkeypatch.setattr(runtime_module, "_storage_quota", True)
    sb = make_sandbox(disk="64m")
    assert sb.run("echo up").output == "up\n"
    assert runtime_module._storage_quota is False


# --- an image without mkfifo -------------------------------------------------------------


@pytest.fixture
def image_without_mkfifo(docker_image: str) -> Iterator[str]:
    """The base image minus ``mkfifo``: the keeper falls back to a pipeline between relay and spare shell."""
    import io
    import secrets

    tag = f"rock-env/test-no-mkfifo:{secrets.token_hex(4)}"
    dockerfile = f"FROM {docker_image}\nRUN rm -f /usr/bin/mkfifo /bin/mkfifo\n".encode()
    for _ in docker_api().build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True, network_mode="none"):
        pass
    image_id = docker_api().inspect_image(tag)["Id"]
    yield tag
    # (set up before make_sandbox, so torn down after its containers are gone)
    docker_api().remove_image(image_id, force=True)
    assert not any(image["Id"] == image_id for image in docker_api().images(all=True))


def test_keeper_without_mkfifo_still_recovers(image_without_mkfifo: str, make_sandbox: MakeSandbox) -> None:
    # no fifo, no spare shell: the default session is a docker exec, and everything else works as usual
    sb = make_sandbox(image=image_without_mkfifo, pids=64, ttl=600)
    assert sb.run("command -v mkfifo || echo none").output == "none\n"
    shell = sb.run("echo $$").output
    assert sb.run("kill -9 -1").exit_code == 0
    after = sb.run("echo $$; echo works", timeout=30)
    assert after.output == f"{shell}works\n" and not after.session_restarted
    assert sb.run(":(){ :|:& };:").exit_code == 0
    time.sleep(1)
    assert own_lines(sb.run("echo alive; ls -d /", timeout=30).output) == ["alive", "/"]


def test_ttl_holds_after_the_watchdog_was_killed(docker_image: str, tmp_path: Path) -> None:
    # the runtime alone (no SDK reaper on the host): only the keeper's watchdog ends the container
    from rock_env.sandbox.runtimes.docker import LABEL_SANDBOX

    with bare_runtime(tmp_path, image=docker_image, ttl=4) as runtime:
        started = time.monotonic()
        killer = runtime.open_process(["sh", "-c", "kill -9 -1; echo sent"], stdin=False)
        assert killer.read(30) == b"sent\n"
        killer.close()
        assert runtime.alive(), "kill -9 -1 ended the container"
        deadline = started + 20
        while docker_api().containers(all=True, filters={"label": f"{LABEL_SANDBOX}={runtime.sandbox_id}"}):
            assert time.monotonic() < deadline, "the container outlived its ttl after its watchdog was killed"
            time.sleep(0.1)
        assert time.monotonic() - started > 2
