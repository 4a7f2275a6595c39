"""Docker runtime latency, side by side with the Docker floors, in one run.

1. create + first command output + destroy: ``Sandbox(runtime="docker")`` -> ``run("echo hi")``
   -> ``stop()`` versus ``docker run --rm --network none IMAGE true`` (the CLI, same image).
   The two are interleaved (one of each per round) so that load on the shared machine hits both.
2. session command round trip: ``sb.run("true")`` in a persistent session versus a bare
   ``docker exec -i CONTAINER bash --norc --noprofile`` pipe (write ``true; echo MARKER``, read
   until the marker), both against one running container.
3. (with ``--burst N``) N sandboxes created at once from N threads, each running one command and
   destroyed, versus N concurrent ``docker run --rm --network none IMAGE true``: wall time.

Prints p50/p95 per side and the ratios. Usage::

    .venv/bin/python benchmarks/sandbox_latency_docker.py [--runs 20] [--round-trips 500] [--burst 32] [--image IMAGE]

The image must exist (``rock-env image build-base``).
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rock_env.sandbox import Sandbox
from rock_env.sandbox.runtimes.docker import DEFAULT_IMAGE


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of ``fn``."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


PHASES: dict[str, list[float]] = {"start": [], "first output": [], "stop": []}


def ours_lifecycle(image: str) -> None:
    """Create a docker sandbox, wait for the first output of a command, destroy it (phases recorded)."""
    t0 = time.perf_counter()
    sb = Sandbox(runtime="docker", image=image)
    try:
        sb.start()
        t1 = time.perf_counter()
        result = sb.run("echo hi")
        t2 = time.perf_counter()
        if result.output != "hi\n":
            raise RuntimeError(f"unexpected output {result.output!r}")
    finally:
        sb.stop()
    t3 = time.perf_counter()
    PHASES["start"].append(t1 - t0)
    PHASES["first output"].append(t2 - t1)
    PHASES["stop"].append(t3 - t2)


def floor_lifecycle(image: str) -> None:
    """``docker run --rm --network none IMAGE true``."""
    subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True)


class BarePipe:
    """A bash reading commands from a ``docker exec -i`` pipe: the floor of a session round trip."""

    def __init__(self, container: str) -> None:
        self.proc = subprocess.Popen(
            ["docker", "exec", "-i", container, "bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.stdout = self.proc.stdout.fileno()
        self.seq = 0
        self.round_trip()  # warm up (the exec itself is not part of a round trip)

    def round_trip(self) -> None:
        """Run ``true`` and read until its end marker."""
        self.seq += 1
        marker = f"__END_{self.seq}__".encode()
        os.write(self.stdin, b"true; echo " + marker + b"\n")
        data = b""
        while marker not in data:
            select.select([self.stdout], [], [])
            chunk = os.read(self.stdout, 65536)
            if not chunk:
                raise RuntimeError("the bare docker exec pipe closed")
            data += chunk

    def close(self) -> None:
        """End the bash and reap the ``docker exec`` client."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def burst(image: str, n: int) -> tuple[float, float]:
    """Wall seconds for ``n`` concurrent sandbox lifecycles, and for ``n`` concurrent ``docker run --rm true``."""
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda _: ours_lifecycle(image), range(n)))
    ours = time.perf_counter() - started
    started = time.perf_counter()
    procs = [
        subprocess.Popen(["docker", "run", "--rm", "--network", "none", image, "true"], stdout=subprocess.DEVNULL)
        for _ in range(n)
    ]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise RuntimeError(f"docker run failed: exit codes {codes}")
    return ours, time.perf_counter() - started


def report(name: str, ours: list[float], floor: list[float], floor_name: str, scale: float, unit: str) -> None:
    """Print p50/p95 of both sides and the ratios."""
    o50, o95 = percentile(ours, 0.5) * scale, percentile(ours, 0.95) * scale
    f50, f95 = percentile(floor, 0.5) * scale, percentile(floor, 0.95) * scale
    print(f"{name} (n={len(ours)})")
    print(f"  ours                 p50 {o50:9.3f} {unit}   p95 {o95:9.3f} {unit}")
    print(f"  {floor_name:<20} p50 {f50:9.3f} {unit}   p95 {f95:9.3f} {unit}")
    print(f"  ratio ours/floor     p50 {o50 / f50:9.2f}x     p95 {o95 / f95:9.2f}x")


def main() -> None:
    """Run both comparisons and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="lifecycles per side")
    parser.add_argument("--round-trips", type=int, default=500, help="session commands per side")
    parser.add_argument("--burst", type=int, default=0, help="also create this many sandboxes at once (0: skip)")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()

    # warm both paths once (docker client, image layers in page cache, imports)
    ours_lifecycle(args.image)
    floor_lifecycle(args.image)
    for values in PHASES.values():
        values.clear()
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(args.runs):
        ours.append(timed(lambda: ours_lifecycle(args.image)))
        floor.append(timed(lambda: floor_lifecycle(args.image)))
    report("create + first output + destroy", ours, floor, "docker run --rm true", 1000, "ms")
    split = ", ".join(f"{name} {statistics.median(values) * 1000:.1f} ms" for name, values in PHASES.items())
    print(f"  ours by phase (p50)  {split}")

    with Sandbox(runtime="docker", image=args.image) as sb:
        sb.run("true")
        container = f"rock-env-{sb.id}"
        bare = BarePipe(container)
        try:
            ours_rt: list[float] = []
            floor_rt: list[float] = []
            for _ in range(args.round_trips):
                ours_rt.append(timed(lambda: sb.run("true")))
                floor_rt.append(timed(bare.round_trip))
        finally:
            bare.close()
    report("session round trip", ours_rt, floor_rt, "docker exec -i pipe", 1000, "ms")
    print(f"  difference           p50 {(statistics.median(ours_rt) - statistics.median(floor_rt)) * 1000:9.3f} ms")

    if args.burst:
        ours_wall, floor_wall = burst(args.image, args.burst)
        print(f"burst of {args.burst} at once (wall time, each: create + first output + destroy)")
        print(f"  ours                 {ours_wall:9.2f} s")
        print(f"  docker run --rm true {floor_wall:9.2f} s")
        print(f"  ratio ours/floor     {ours_wall / floor_wall:9.2f}x")


if __name__ == "__main__":
    main()
