"""Bad input on the namespace runtime: each case ends in a clear result or a typed error, the host stays fine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rock_env.errors import ConfigError
from rock_env.sandbox import Sandbox, teardown

pytestmark = pytest.mark.bwrap


def test_malformed_limits_are_config_errors(sandbox_state: Path) -> None:
    with pytest.raises(ConfigError, match="8gb"):
        Sandbox(runtime="namespace", memory="8gb?")
    with pytest.raises(ConfigError, match="disk"):
        Sandbox(runtime="namespace", disk="a lot")
    with pytest.raises(ConfigError, match="cpus"):
        Sandbox(runtime="namespace", cpus=-1)


def test_command_that_never_ends_times_out(ns: Sandbox) -> None:
    started = time.monotonic()
    result = ns.run("sleep infinity", timeout=0.5)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 5
    one_shot = ns.exec(["sleep", "infinity"], timeout=0.5)
    assert one_shot.timed_out and one_shot.exit_code is None
    assert ns.run("echo fine").output == "fine\n"


def test_output_flood_is_capped(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", output_limit=64 * 1024) as sb:
        result = sb.run("yes flood | head -c 50000000; echo; echo done", timeout=60)
        assert result.exit_code == 0 and result.truncated
        assert result.output_bytes == 50_000_006
        assert len(result.output) < 64 * 1024 + 200
        assert "[rock-env: output truncated" in result.output
        flood = sb.exec("head -c 20000000 /dev/zero", timeout=60)
        assert flood.truncated and flood.output_bytes == 20_000_000


def test_binary_output(ns: Sandbox) -> None:
    result = ns.run("head -c 4096 /dev/urandom; printf '\\n'")
    assert result.exit_code == 0 and result.output_bytes == 4097
    raw = ns.exec(["head", "-c", "256", "/dev/urandom"])
    assert raw.exit_code == 0 and raw.output_bytes == 256


def test_fork_bomb_is_contained(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", pids=64) as sb:
        result = sb.run("bomb() { bomb | bomb & }; bomb; sleep 1; echo survived", timeout=15)
        assert result.timed_out or "survived" in result.output
        runtime = sb._runtime
        assert runtime is not None and runtime.cgroups is not None
        assert len(runtime.cgroups.pids()) <= 64
        assert os.system("true") == 0  # the host can still fork
        pids_cgroup = runtime.cgroups.paths["pids"]
    # stop() killed every process of the bomb: its cgroup could be removed, so it was empty
    assert teardown.wait_all(timeout=30)
    assert not pids_cgroup.exists()


def test_memory_hog_is_oom_killed(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", memory="64m") as sb:
        result = sb.run("python3 -c 'x = bytearray(400 * 1024 * 1024); print(len(x))'", timeout=60)
        assert result.exit_code == 137 and result.oom_killed
        assert sb.run("echo alive").output == "alive\n"


def test_disk_limit_stops_a_10_gb_write(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", disk="32m") as sb:
        result = sb.run("head -c 10G /dev/zero > big; echo rc=$?", timeout=60)
        assert "No space left on device" in result.output and "rc=1" in result.output
        assert int(sb.run("stat -c %s big").output) <= 32 * 1024 * 1024
        sb.run("rm big")
        assert sb.run("echo ok > small && cat small").output == "ok\n"


def test_cpu_limit_is_applied(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace", cpus=0.5) as sb:
        runtime = sb._runtime
        assert runtime is not None and runtime.cgroups is not None
        quota = (runtime.cgroups.paths["cpu"] / "cpu.cfs_quota_us").read_text().strip()
        assert quota == "50000"
        assert sb.run("echo $(( 6 * 7 ))").output == "42\n"


def test_full_disk_under_a_memory_limit_is_enospc_not_oom(sandbox_state: Path) -> None:
    # tmpfs pages count against the memory limit: the writable layer is capped at half of it
    with Sandbox(runtime="namespace", memory="256m", disk="1g") as sb:
        result = sb.run("head -c 2G /dev/zero > /tmp/big; echo rc=$?", timeout=60)
        assert "No space left on device" in result.output and "rc=1" in result.output
        assert sb.run("echo still alive").output == "still alive\n"


def test_rm_rf_root_cannot_break_the_sandbox(sandbox_state: Path) -> None:
    with Sandbox(runtime="namespace") as sb:
        sb.run("rm -rf --no-preserve-root / 2>/dev/null", timeout=120)
        after = sb.run("ls -d /bin /usr/bin && echo usable")
        assert after.exit_code == 0 and after.output.endswith("usable\n")
        assert sb.exec(["true"]).exit_code == 0
