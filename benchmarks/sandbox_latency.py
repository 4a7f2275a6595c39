"""Sandbox latency and density, ours vs the floors measured in the same run.

    .venv/bin/python benchmarks/sandbox_latency.py [--runs 30] [--rt-runs 2000] [--density 200]
    .venv/bin/python benchmarks/sandbox_latency.py --compare-rev REV [--runs 40]   # old code vs this tree

One function per runtime section (docker has its own script, ``sandbox_latency_docker.py``):

* create + first command output + destroy, p50/p95, vs ``bwrap --unshare-all --ro-bind / / true``
  (runs interleaved with ours so that load on the shared machine hits both alike), plus the
  same bwrap invocation our sandboxes use (our mounts, running ``sh -c 'bash -c true'``) to show
  how much of the gap is the mount set rather than the SDK;
* session command round trip (``run("true")``) vs a bare ``bash`` pipe;
* snapshot restore of a 4 MB / 200 file workspace, after a few changed files and after all changed;
* density: N idle namespace sandboxes at once, host memory per sandbox (MemAvailable delta),
  start time of the first and last 100, host mounts added (should be 0).

``stop()`` of a namespace sandbox returns once the sandbox is killed and unusable; reaping and
removing its host state runs in the background. The lifecycle section reports both: up to
``stop()`` returning, and up to the background teardown being done.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _stats import fmt, pct, timed

FLOOR_BWRAP = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"]


def lifecycle(runtime: str, *, wait_teardown: bool = False) -> Callable[[], None]:
    """create + first command output + destroy with our SDK.

    ``stop()`` returns once the sandbox is unusable and killed; with ``wait_teardown`` the time
    also covers the background teardown (bwrap reaped, cgroups and state dir removed).
    """
    from rock_env.sandbox import Sandbox

    def once() -> None:
        sb = Sandbox(runtime=runtime)
        sb.start()
        result = sb.run("echo ready")
        assert result.output == "ready\n", result
        runtime_obj = sb._runtime
        sb.stop()
        if wait_teardown and runtime_obj is not None:
            getattr(runtime_obj, "wait_stopped", lambda timeout: True)(timeout=30)

    return once


def our_bwrap_argv(state: Path) -> tuple[list[str], list[int]]:
    """The bwrap command line of a default namespace sandbox running ``sh -c 'bash -c true'``, and the fds it reads."""
    from rock_env.sandbox import uids
    from rock_env.sandbox.models import SandboxConfig
    from rock_env.sandbox.runtimes.namespace import NamespaceRuntime

    state.mkdir(parents=True, exist_ok=True)
    runtime = NamespaceRuntime(SandboxConfig(), "sb-000000000000", state)
    runtime._uid = uids.uid_range().start if uids.maps_other_uid() else os.geteuid()
    fds: list[int] = []
    argv = runtime._bwrap_argv(info_fd=0, block_fd=0, null_fds=fds)
    argv = argv[: argv.index("--info-fd")]
    return [*argv, "sh", "-c", "bash --norc --noprofile -c true"], fds


def _run_with_fresh_fds(argv: list[str], fds: list[int]) -> None:
    """Run our bwrap argv; each ``--ro-bind-data`` fd is read (and closed) by bwrap, so reopen them per run."""
    for fd in fds:
        os.dup2(os.open(os.devnull, os.O_RDONLY), fd)
        os.set_inheritable(fd, True)
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, pass_fds=tuple(fds))


def bench_lifecycle(runtime: str, runs: int) -> None:
    """create+first output+destroy for one runtime vs the bwrap floor, interleaved."""
    from rock_env.sandbox import teardown

    ours, full, floor, mounts = [], [], [], []
    body = lifecycle(runtime)
    body_full = lifecycle(runtime, wait_teardown=True)
    scratch = tempfile.TemporaryDirectory(prefix="rock-env-bench-bwrap-")
    ours_argv, ours_fds = our_bwrap_argv(Path(scratch.name))
    body()  # warm up imports and caches
    subprocess.run(FLOOR_BWRAP, check=True)
    for _ in range(runs):
        teardown.wait_all(30)  # no teardown of an earlier sandbox competes with the floor
        floor.append(timed(lambda: subprocess.run(FLOOR_BWRAP, check=True)))
        ours.append(timed(body))
        teardown.wait_all(30)
        full.append(timed(body_full))
        if runtime == "namespace":
            mounts.append(timed(lambda: _run_with_fresh_fds(ours_argv, ours_fds)))
    teardown.wait_all(30)
    scratch.cleanup()
    base = statistics.median(floor)
    print(f"[lifecycle] {runtime:<9} ours   {fmt(ours)}   ratio p50 ours/floor = {statistics.median(ours) / base:.2f}x")
    print(
        f"[lifecycle] {runtime:<9} ours, waiting for the background teardown too: {fmt(full)}   "
        f"ratio p50 = {statistics.median(full) / base:.2f}x"
    )
    print(f"[lifecycle] {'bwrap':<9} floor  {fmt(floor)}")
    if mounts:
        share = statistics.median(mounts) / base
        print(f"[lifecycle] {'bwrap':<9} our mount set + sh + bash, no SDK: {fmt(mounts)}   ({share:.2f}x floor)")


class BarePipe:
    """A bare ``bash`` pipe: the reference round trip."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )

    def round_trip(self) -> None:
        """One command and its end marker."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.write(self.proc.stdin.fileno(), b"true; echo __M__\n")
        data = b""
        while b"__M__\n" not in data:
            data += os.read(self.proc.stdout.fileno(), 65536)

    def close(self) -> None:
        """Kill the shell."""
        self.proc.kill()
        self.proc.wait()


def bench_round_trip(runtime: str, runs: int) -> None:
    """Session round trip (``run("true")``) vs a bare bash pipe, interleaved."""
    from rock_env.sandbox import Sandbox

    bare = BarePipe()
    ours, ref = [], []
    with Sandbox(runtime=runtime) as sb:
        sb.run("true")
        for _ in range(runs):
            ref.append(timed(bare.round_trip))
            ours.append(timed(lambda: sb.run("true")))
    bare.close()
    ratio = statistics.median(ours) / statistics.median(ref)
    p50, p95 = statistics.median(ours) * 1e6, pct(ours, 0.95) * 1e6
    print(f"[session ] {runtime:<9} ours  p50 {p50:8.1f} us  p95 {p95:8.1f} us")
    p50, p95 = statistics.median(ref) * 1e6, pct(ref, 0.95) * 1e6
    print(f"[session ] {'bash pipe':<9} ref   p50 {p50:8.1f} us  p95 {p95:8.1f} us   ratio {ratio:.1f}x")


def bench_restore(runtime: str, runs: int, megabytes: int = 4, files: int = 200) -> None:
    """Snapshot restore of a workspace with ``files`` files totalling ``megabytes`` MB.

    Two cases: an episode that touched a few files (deleted 2, appended to 1, created 1) and
    one that touched every file (``touch`` changes each file's ctime, so all are copied back).
    """
    from rock_env.sandbox import Sandbox

    with Sandbox(runtime=runtime) as sb:
        size = megabytes * (1 << 20) // files
        sb.run(f"mkdir -p src/pkg && for i in $(seq {files}); do head -c {size} /dev/urandom > src/pkg/f$i; done")
        snap = sb.snapshot()
        for case, dirty in (
            ("few files changed", "rm src/pkg/f1 src/pkg/f2; echo x >> src/pkg/f3; echo dirty > src/new"),
            ("all files changed", "touch src/pkg/*; echo dirty > src/new"),
        ):
            times = []
            for _ in range(runs):
                sb.run(dirty)
                times.append(timed(lambda: sb.restore(snap)))
                check = sb.run("ls src/pkg | wc -l; test -e src/new && echo dirty || echo clean").output.split()
                assert check == [str(files), "clean"], check
            print(f"[restore ] {runtime:<9} {megabytes} MB in {files} files, {case}: {fmt(times)}")


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _mount_count() -> int:
    """Entries in this process's mount table (every new bwrap copies it)."""
    with open("/proc/self/mountinfo") as fh:
        return sum(1 for _ in fh)


def _pss_of_trees(roots: list[int]) -> int:
    """Proportional set size (shared pages split among their users) of the processes under ``roots``."""
    from rock_env.sandbox.hostproc import descendants

    total = 0
    for root in roots:
        for pid in [root, *descendants(root)]:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as fh:
                    for line in fh:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
    return total


def bench_density(count: int) -> None:
    """Start ``count`` idle namespace sandboxes (each answered one command), measure memory, stop them."""
    from rock_env.sandbox import Sandbox, teardown

    before = _mem_available()
    mounts_before = _mount_count()
    boxes = []
    started = time.perf_counter()
    first_100 = last_100_start = 0.0
    try:
        for i in range(count):
            if i == count - 100:
                last_100_start = time.perf_counter() - started
            sb = Sandbox(runtime="namespace")
            sb.start()
            sb.run("true")
            boxes.append(sb)
            if i == 99:
                first_100 = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        mounts_added = _mount_count() - mounts_before
        time.sleep(1.0)
        after = _mem_available()
        pss = _pss_of_trees([sb._runtime.host_pids[0] for sb in boxes if sb._runtime is not None])
        alive = sum(1 for sb in boxes if sb.run("echo ok").output == "ok\n")
    finally:
        stop_started = time.perf_counter()
        for sb in boxes:
            sb.stop()
        stop_elapsed = time.perf_counter() - stop_started
        teardown.wait_all(600)
        teardown_elapsed = time.perf_counter() - stop_started
    per_box = (before - after) / max(1, len(boxes))
    print(
        f"[density ] {len(boxes)} idle namespace sandboxes up at once ({alive} answered a command after all were up); "
        f"started in {elapsed:.1f} s (first 100: {first_100:.1f} s, last 100: {elapsed - last_100_start:.1f} s), "
        f"host mounts added: {mounts_added}; stop() of all returned in {stop_elapsed:.1f} s, "
        f"background teardown done after {teardown_elapsed:.1f} s; host memory per sandbox "
        f"{per_box / 2**20:.2f} MiB (MemAvailable delta, noisy on a shared machine), "
        f"{pss / max(1, len(boxes)) / 2**20:.2f} MiB PSS of its processes -> 1,000 would take about "
        f"{per_box * 1000 / 2**30:.2f} GiB"
    )


_AB_WORKER = """
import json, sys, time
from rock_env.sandbox import Sandbox
def once():
    sb = Sandbox(runtime="namespace"); sb.start(); assert sb.run("echo ready").output == "ready\\n"; sb.stop()
once()
for _ in sys.stdin:
    t = time.perf_counter(); once(); print(json.dumps(time.perf_counter() - t), flush=True)
"""


def bench_compare_rev(rev: str, runs: int, state: str) -> None:
    """Namespace lifecycle of the code at git revision ``rev`` vs this tree vs the floor, interleaved.

    Each side runs in its own worker process (``PYTHONPATH`` pointing at an export of ``rock_env``
    at that revision, or at this tree); the three alternate, so load hits them alike.
    """
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="rock-env-bench-rev-") as old_tree:
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "rock_env"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", old_tree], input=archive.stdout, check=True)

        def worker(path: str, sub: str) -> subprocess.Popen[str]:
            env = {**os.environ, "PYTHONPATH": path, "ROCK_ENV_SANDBOX_STATE": os.path.join(state, sub)}
            return subprocess.Popen(
                [sys.executable, "-c", _AB_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )

        def ask(proc: subprocess.Popen[str]) -> float:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            return float(json.loads(proc.stdout.readline()))

        workers = {rev: worker(old_tree, "old"), "this tree": worker(str(repo), "new")}
        times: dict[str, list[float]] = {"floor": [], rev: [], "this tree": []}
        for i in range(runs):
            times["floor"].append(timed(lambda: subprocess.run(FLOOR_BWRAP, check=True)))
            for name in list(workers) if i % 2 else list(workers)[::-1]:
                times[name].append(ask(workers[name]))
        for proc in workers.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
    base = statistics.median(times["floor"])
    for name, values in times.items():
        print(f"[compare ] {name:<10} {fmt(values)}   ratio p50/floor = {statistics.median(values) / base:.2f}x")


def main(argv: list[str] | None = None) -> int:
    """Run the sections and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rt-runs", type=int, default=2000, help="session round trips per runtime")
    parser.add_argument("--density", type=int, default=200, help="idle namespace sandboxes (0 to skip)")
    parser.add_argument("--runtimes", default="local,namespace")
    parser.add_argument(
        "--compare-rev", metavar="REV", help="only: namespace lifecycle of git revision REV vs this tree vs the floor"
    )
    args = parser.parse_args(argv)
    runtimes = [r for r in args.runtimes.split(",") if r]
    with tempfile.TemporaryDirectory(prefix="rock-env-bench-", dir="/dev/shm") as home:
        os.environ["ROCK_ENV_SANDBOX_STATE"] = home
        print(f"# sandbox_latency  python {sys.version.split()[0]}  cpus {os.cpu_count()}  load {os.getloadavg()}")
        if args.compare_rev:
            bench_compare_rev(args.compare_rev, args.runs, home)
            return 0
        for runtime in runtimes:
            bench_lifecycle(runtime, args.runs)
        for runtime in runtimes:
            bench_round_trip(runtime, args.rt_runs)
        for runtime in runtimes:
            bench_restore(runtime, args.runs)
        if args.density and "namespace" in runtimes:
            bench_density(args.density)
        from rock_env.sandbox import teardown

        teardown.wait_all(600)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
