"""Lifetimes: ttl and idle_ttl are enforced, an owner killed with SIGKILL leaves nothing behind, gc and list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rock_env.errors import InvalidArgument, SandboxClosed
from rock_env.sandbox import Sandbox
from rock_env.sandbox.cli import main as sandbox_cli
from rock_env.sandbox.gc import reap_dir
from rock_env.sandbox.mounts import mounted_below

pytestmark = pytest.mark.bwrap


def _eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_absolute_ttl_destroys_the_sandbox(sandbox_state: Path) -> None:
    sb = Sandbox(runtime="namespace", ttl=2)
    sb.start()
    assert sb.run("echo alive").output == "alive\n"
    assert _eventually(lambda: not sb.state_dir.exists())
    with pytest.raises(SandboxClosed, match="ttl"):
        sb.run("true")
    sb.stop()


def test_idle_ttl_counts_from_the_last_command(sandbox_state: Path) -> None:
    sb = Sandbox(runtime="namespace", idle_ttl=2)
    sb.start()
    busy_until = time.monotonic() + 3.5
    while time.monotonic() < busy_until:  # used more often than every 2 s: stays alive
        assert sb.run("true").exit_code == 0
        time.sleep(0.5)
    assert sb.state_dir.exists()
    assert _eventually(lambda: not sb.state_dir.exists())
    with pytest.raises(SandboxClosed):
        sb.run("true")
    sb.stop()


OWNER = textwrap.dedent(
    """
    import json, sys, time
    from rock_env.sandbox import Sandbox
    ttl = float(sys.argv[1]) if sys.argv[1] != "none" else None
    sb = Sandbox(runtime="namespace", ttl=ttl, memory="64m")
    sb.start()
    sb.run("sleep 1000 &")
    rt = sb._runtime
    print(json.dumps({"dir": str(sb.state_dir), "pids": rt.host_pids + rt.cgroups.pids(),
                      "cgroups": [str(p) for p in rt.cgroups.paths.values()]}), flush=True)
    time.sleep(600)
    """
)


def _killed_owner(ttl: str) -> dict[str, object]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, ttl], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info: dict[str, object] = json.loads(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return info


def test_owner_sigkill_with_ttl_is_reaped_without_gc(sandbox_state: Path) -> None:
    info = _killed_owner("300")
    state_dir = Path(str(info["dir"]))
    pids = [int(p) for p in info["pids"]]  # type: ignore[attr-defined]
    assert _eventually(lambda: not any(_alive(p) for p in pids))  # bwrap dies with its parent
    assert _eventually(lambda: not state_dir.exists())  # the reaper saw the owner go and cleaned up
    assert not any(Path(c).exists() for c in info["cgroups"])  # type: ignore[attr-defined]
    assert mounted_below(state_dir) == []


def test_owner_sigkill_without_ttl_is_reaped_by_gc(sandbox_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = _killed_owner("none")
    state_dir = Path(str(info["dir"]))
    pids = [int(p) for p in info["pids"]]  # type: ignore[attr-defined]
    assert _eventually(lambda: not any(_alive(p) for p in pids))
    assert state_dir.exists()
    assert mounted_below(state_dir) == []  # the workspace tmpfs lived in the sandbox's mount namespace only
    assert sandbox_cli(["list"]) == 0
    assert f"{state_dir.name}  namespace  dead" in capsys.readouterr().out
    assert sandbox_cli(["gc", "--dry-run"]) == 0
    assert f"would reap {state_dir.name} (owner gone)" in capsys.readouterr().out
    assert state_dir.exists()
    assert sandbox_cli(["gc"]) == 0
    out = capsys.readouterr().out
    assert f"reaping {state_dir.name} (owner gone)" in out and "removed cgroup" in out
    assert not state_dir.exists()
    assert not any(Path(c).exists() for c in info["cgroups"])  # type: ignore[attr-defined]


def test_gc_leaves_live_sandboxes_alone(sandbox_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Sandbox(runtime="namespace") as sb:
        assert sandbox_cli(["gc"]) == 0
        assert sb.state_dir.name not in capsys.readouterr().out
        assert sb.run("echo still").output == "still\n"


def test_reap_dir_refuses_anything_but_a_sandbox_state_dir(tmp_path: Path) -> None:
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    for target in (precious, Path(""), Path("."), tmp_path):
        with pytest.raises(InvalidArgument, match="not a sandbox state directory"):
            reap_dir(target)
    assert (precious / "keep.txt").read_text() == "keep"
