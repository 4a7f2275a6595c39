"""Limits that hold and recover: fork bombs, pids, memory, CPU, disk, output floods, binary output.

Each case attacks a fresh sandbox of the target, asserts what the caller gets, that the host and
the canary sandbox are unaffected and that nothing is left once the sandbox is stopped
(``arena.finish()``), and that the *next* command in the same sandbox works within seconds.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from tests.abuse import hostscan
from tests.abuse.conftest import Arena, brief, wait_until

pytestmark = [pytest.mark.abuse, pytest.mark.slow]

MiB = 1 << 20
#: how long the next command after an attack may take
RECOVERY = 10.0


def assert_next_works(sandbox: Any, *, budget: float = RECOVERY) -> None:
    """The next command (which must fork) works within ``budget`` seconds, and soon after, output is clean again.

    The first command after an attack may still show what the attack's leftovers printed before the
    runner killed them (``fork: retry`` lines of a bomb): it must succeed and print its own lines. A
    command right after that must print exactly its own output.
    """
    started = time.monotonic()
    result = sandbox.run("/bin/echo next; /bin/true && echo forked", timeout=budget + 5)
    took = time.monotonic() - started
    lines = result.output.splitlines()
    assert result.exit_code == 0 and "next" in lines and "forked" in lines, f"the next command: {brief(result)}"
    assert took < budget, f"the next command took {took:.1f}s (more than {budget:.0f}s)"
    one_shot = sandbox.exec(["/bin/echo", "exec-ok"], timeout=budget + 5)
    assert one_shot.exit_code == 0 and one_shot.output == "exec-ok\n", f"a one-shot command after it: {brief(one_shot)}"
    clean = sandbox.run("/bin/echo clean", timeout=budget + 5)
    assert clean.exit_code == 0 and clean.output == "clean\n", f"the command after that: {brief(clean)}"


def test_fork_bomb(arena: Arena) -> None:
    """``:(){ :|:& };:`` under pids=64: the host sees at most 64 processes of it, the next command works."""
    sb = arena.sandbox(pids=64)
    started = time.monotonic()
    bomb = sb.run(":(){ :|:& };:", timeout=5)
    assert time.monotonic() - started < 5 + 15, f"the bomb's run() did not return in time: {brief(bomb)}"
    # the bomb keeps forking in the background: the sandbox is at its limit, never above it
    time.sleep(1.0)
    peak = len(arena.host_pids(sb))
    assert peak <= 64 + 2, f"{peak} host processes in a sandbox with pids=64"
    assert_next_works(sb)
    assert wait_until(lambda: len(arena.host_pids(sb)) < 16, 10), (
        f"the bomb's processes are still there: {len(arena.host_pids(sb))} processes in the sandbox"
    )
    arena.finish()


def test_pids_limit_hit_by_background_bomb(arena: Arena) -> None:
    """A background job fills the pids limit (sleepers, not an exponential bomb): the next command works."""
    sb = arena.sandbox(pids=64)
    sb.spawn("while :; do sleep 1000 & done")
    assert wait_until(lambda: len(arena.host_pids(sb)) >= 60, 10), (
        f"the background bomb did not reach the limit: {len(arena.host_pids(sb))} processes"
    )
    assert len(arena.host_pids(sb)) <= 64 + 2
    assert_next_works(sb)
    arena.finish()


def test_memory_bomb(arena: Arena) -> None:
    """A 1 GiB allocation under memory=128m is OOM-killed and reported; the next command works."""
    sb = arena.sandbox(memory="128m")
    result = sb.run("python3 -c 'bytearray(1 << 30)'", timeout=60)
    assert result.oom_killed, f"oom_killed not set: {brief(result)}"
    assert result.exit_code not in (0, None), brief(result)
    assert not result.timed_out, brief(result)
    assert_next_works(sb)
    after = sb.run("echo still-here")
    assert after.output == "still-here\n" and not after.oom_killed, brief(after)
    arena.finish()


def test_memory_bomb_not_last(arena: Arena) -> None:
    """``oom_killed`` is set when the OOM-killed process was not the command's last one."""
    sb = arena.sandbox(memory="128m")
    result = sb.run("python3 -c 'bytearray(1 << 30)'; echo rc=$?", timeout=60)
    assert result.exit_code == 0, brief(result)
    assert "rc=137" in result.output, brief(result)
    assert result.oom_killed, f"oom_killed not set when the killed process was not the last: {brief(result)}"
    one_shot = sb.exec("python3 -c 'bytearray(1 << 30)'; echo rc=$?", timeout=60)
    assert one_shot.oom_killed and "rc=137" in one_shot.output, f"exec: {brief(one_shot)}"
    assert_next_works(sb)
    arena.finish()


def test_cpu_spin_past_timeout(arena: Arena) -> None:
    """A builtin busy loop and a spinning child past their timeouts: ``timed_out``, nothing keeps spinning."""
    sb = arena.sandbox(cpus=0.5)
    started = time.monotonic()
    builtin = sb.run("while :; do :; done", timeout=1)
    assert builtin.timed_out and builtin.exit_code is None, brief(builtin)
    assert time.monotonic() - started < 1 + 10
    mark = secrets.token_hex(4)
    child = sb.run(f"python3 -c 'while True: pass' {mark}", timeout=1)
    assert child.timed_out and child.exit_code is None, brief(child)
    assert wait_until(lambda: not hostscan.find_pids(f"while True: pass {mark}"), 5), "the spinning child survived"
    one_shot = sb.exec(f"python3 -c 'while True: pass' {mark}", timeout=1)
    assert one_shot.timed_out and one_shot.exit_code is None, brief(one_shot)
    assert wait_until(lambda: not hostscan.find_pids(f"while True: pass {mark}"), 5), "the exec'd spinner survived"
    assert_next_works(sb)
    arena.finish()


#: what one place may take: the disk limit, and what writes stop at (each place's own fill is capped here)
DISK = 64 * MiB
FILL_CAP = 256 * MiB
FILL_SCRIPT = r"""
p="$1"
case "$p" in HOME) p="$HOME";; esac
[ -d "$p" ] || { echo "state=missing"; exit 0; }
d="${p%/}/rock-env-fill-$$"
mkdir "$d" 2>/dev/null || { echo "state=readonly"; exit 0; }
i=0; rc=0; err=
while [ $i -lt 16 ]; do
  err=$( { head -c 16M /dev/zero > "$d/f$i"; } 2>&1 ) || { rc=1; break; }
  i=$((i+1))
done
bytes=$(du -sb "$d" | cut -f1)
echo "state=written rc=$rc bytes=$bytes dir=$d err=$err"
"""


def fill_places(arena: Arena, places: tuple[str, ...]) -> None:
    """Fill each place of a disk=64m sandbox; assert each stops with ENOSPC near 64 MiB (or is read-only/missing)."""
    sb = arena.sandbox(disk="64m")
    sb.write_file("fill.sh", FILL_SCRIPT)
    bad = []
    report = []
    for place in places:
        free_before = hostscan.mem_available()
        result = sb.run(f"bash /workspace/fill.sh {place} 2>&1", timeout=120)
        free_after = hostscan.mem_available()
        fields = dict(part.split("=", 1) for part in result.output.split(" err=")[0].split() if "=" in part)
        err = result.output.split(" err=", 1)[1].strip() if " err=" in result.output else ""
        state = fields.get("state")
        drop = free_before - free_after
        report.append(f"{place}: {result.output.strip()} (host MemAvailable -{drop / MiB:.0f} MiB)")
        if state in ("missing", "readonly"):
            continue
        if state != "written":
            bad.append(f"{place}: unexpected output {brief(result)}")
            continue
        written = int(fields.get("bytes", "0"))
        if fields.get("rc") != "1":
            bad.append(f"{place}: {written / MiB:.0f} MiB written and no error (no limit)")
        elif "No space left on device" not in err:
            bad.append(f"{place}: the fill stopped with {err!r}, not ENOSPC, after {written / MiB:.0f} MiB")
        if written > DISK + 4 * MiB:
            bad.append(f"{place}: {written / MiB:.0f} MiB written with disk=64m")
        if drop > DISK + 96 * MiB:
            bad.append(f"{place}: host MemAvailable dropped by {drop / MiB:.0f} MiB")
        sb.run(f"rm -rf {fields.get('dir')}", timeout=60)
    assert_next_works(sb)
    assert not bad, "disk limit not held:\n  " + "\n  ".join(bad) + "\nall places:\n  " + "\n  ".join(report)
    arena.finish()


def test_disk_fill_every_writable_place(arena: Arena) -> None:
    """disk=64m: a fill of /workspace, /tmp, /dev/shm, /var/tmp and $HOME stops with ENOSPC near 64 MiB (or
    the place is read-only), and the host's free memory drops by no more than that."""
    fill_places(arena, ("/workspace", "/tmp", "/dev/shm", "/var/tmp", "HOME"))


def test_disk_fill_of_the_root_file_system(arena: Arena) -> None:
    """disk=64m: writing into the sandbox's own root file system (``/`` and root's home ``/root``).

    On namespace the root is read-only (and /root absent). A container's root is Docker's overlay on the
    host's disk, which Docker cannot cap in total on this host's storage driver (overlay2 on ext4):
    there each file is capped at ``disk`` (RLIMIT_FSIZE), which is what this checks (docs/security.md
    lists the total as a known limit of the docker runtime)."""
    if arena.target.runtime == "namespace":
        fill_places(arena, ("/root", "/"))
        return
    sb = arena.sandbox(disk="64m")
    for place in ("/root", "/"):
        result = sb.run(f"head -c 100M /dev/zero > {place}/rock-env-fill; echo rc=$?; stat -c %s {place}/rock-env-fill")
        lines = result.output.strip().splitlines()
        assert "rc=0" not in lines, f"{place}: a 100 MiB file was written with disk=64m: {brief(result)}"
        assert int(lines[-1]) <= DISK, f"{place}: {int(lines[-1]) / MiB:.0f} MiB in one file with disk=64m"
        sb.run(f"rm -f {place}/rock-env-fill")
    assert_next_works(sb)
    arena.finish()


def test_output_flood(arena: Arena) -> None:
    """``head -c 1G /dev/zero`` (and 64 MiB through exec): the caller gets output_limit (1 MiB), a marker, ``truncated``."""
    sb = arena.sandbox()
    for name, call in (
        ("run", lambda: sb.run("head -c 1G /dev/zero", timeout=120)),
        ("exec", lambda: sb.exec("head -c 64M /dev/zero", timeout=120)),
    ):
        result = call()
        assert result.exit_code == 0 and not result.timed_out, f"{name}: {result.exit_code=} {result.timed_out=}"
        assert result.truncated, f"{name}: truncated not set"
        assert "[rock-env: output truncated" in result.output, f"{name}: no truncation marker"
        assert len(result.output.encode()) <= MiB + 512, f"{name}: {len(result.output.encode())} bytes came back"
        assert result.output.startswith("\0" * 4096), f"{name}: the output does not start with the zeros"
        assert result.output_bytes in (0, 1 << 30, 64 * MiB), f"{name}: output_bytes={result.output_bytes}"
    clean = sb.run("echo clean")
    assert clean.output == "clean\n" and clean.exit_code == 0 and not clean.truncated, brief(clean)
    arena.finish()


def test_binary_output(arena: Arena) -> None:
    """Random bytes and NULs come back without an error; the next command's output is clean."""
    sb = arena.sandbox()
    noise = sb.run("head -c 4096 /dev/urandom; printf '\\0\\377\\376\\033[2J'", timeout=30)
    assert noise.exit_code == 0 and isinstance(noise.output, str) and len(noise.output) > 1000, noise.exit_code
    one_shot = sb.exec("head -c 4096 /dev/urandom", timeout=30)
    assert one_shot.exit_code == 0 and isinstance(one_shot.output, str), one_shot.exit_code
    clean = sb.run("echo clean")
    assert clean.output == "clean\n" and clean.exit_code == 0, brief(clean)
    sb.run("head -c 4096 /dev/urandom > random.bin")
    assert len(sb.read_file("random.bin", binary=True)) == 4096
    arena.finish()
