"""Envs and sandboxes through a Ray-placed worker vs the admin's embedded worker vs a standalone worker.

    .venv/bin/python benchmarks/ray_cluster.py                 # defaults below
    .venv/bin/python benchmarks/ray_cluster.py --makes 100 --steps 1000

One run starts three admins one after the other (each a separate ``rock-env admin start``
process on loopback) and measures the same operations on each:

* ``embedded``: the default admin, envs live in the admin process;
* ``worker``: ``server.embedded_worker=false`` plus one ``rock-env worker start`` process
  (the admin forwards every call over HTTP: the same hop as the Ray case);
* ``ray``: ``cluster=ray cluster.address=local``: a private Ray head and one worker actor.

Figures: time until the first worker can host envs (admin start + worker registration),
remote ``make`` + ``reset`` + ``close`` of ``game:Sokoban-v0-easy``, a remote step and a
namespace-sandbox ``run("true")`` (medians and p95), with ratios against ``embedded``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import rock_env as rock
from rock_env.server.testing import ServerProcess

ENV_ID = "game:Sokoban-v0-easy"
MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def wait_worker(url: str, timeout: float = 180.0) -> None:
    """Until the admin lists an alive worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(w["status"] == "alive" for w in httpx.get(url + "/api/v1/workers", timeout=30).json()["workers"]):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no worker registered with {url} in {timeout:.0f}s")


def measure(url: str, makes: int, steps: int, runs: int) -> dict[str, list[float]]:
    """Latencies (s) of make+reset+close, step and sandbox run through the admin at ``url``."""
    out: dict[str, list[float]] = {"make_reset": [], "step": [], "sandbox_run": []}
    warm = rock.make(ENV_ID, backend="remote", base_url=url)
    warm.reset(seed=0)
    warm.close()
    for i in range(makes):
        start = time.perf_counter()
        env = rock.make(ENV_ID, backend="remote", base_url=url)
        env.reset(seed=i)
        env.close()
        out["make_reset"].append(time.perf_counter() - start)
    env = rock.make(ENV_ID, backend="remote", base_url=url)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for move in rng.integers(0, 4, steps):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(MOVES[int(move)])
        out["step"].append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset()
    env.close()
    with rock.Sandbox(runtime="namespace", base_url=url) as sandbox:
        sandbox.run("true")
        for _ in range(runs):
            start = time.perf_counter()
            sandbox.run("true")
            out["sandbox_run"].append(time.perf_counter() - start)
    return out


def run_setup(name: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the admin (and worker) of one setup, measure, stop."""
    data = root / name
    data.mkdir()
    overrides = {
        "embedded": (),
        "worker": ("server.embedded_worker=false",),
        "ray": (
            "cluster=ray",
            "cluster.address=local",
            "ray_workers.poll_interval=0.2",
            f"ray_workers.temp_dir={root / 'ray'}",  # Ray's session files go with the benchmark's temp dir
        ),
    }[name]
    start = time.perf_counter()
    admin = ServerProcess.admin(data, *overrides).start(timeout=180)
    worker = None
    try:
        if name == "worker":
            worker = ServerProcess.worker(admin.url, data, "worker.heartbeat_interval=0.2").start(timeout=120)
        wait_worker(admin.url)
        ready = time.perf_counter() - start
        result: dict[str, Any] = {"ready_s": ready, **measure(admin.url, args.makes, args.steps, args.runs)}
    finally:
        if worker is not None:
            worker.stop()
        admin.stop()
    return result


def summary(values: list[float]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    return statistics.median(values) * 1e3, pct(values, 95) * 1e3


def main(argv: list[str]) -> int:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--makes", type=int, default=50, help="remote make+reset+close repetitions")
    parser.add_argument("--steps", type=int, default=500, help="remote steps")
    parser.add_argument("--runs", type=int, default=200, help="sandbox run('true') repetitions")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rock-bench-ray-") as tmp:
        for name in ("embedded", "worker", "ray"):
            results[name] = run_setup(name, Path(tmp), args)
    base = results["embedded"]
    print(
        "| setup | first worker ready (s) | make+reset+close p50 / p95 (ms) | step p50 / p95 (ms) | "
        "sandbox run p50 / p95 (ms) | make ratio | step ratio | sandbox ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        cells = [f"{res['ready_s']:.1f}"]
        ratios = []
        for key in ("make_reset", "step", "sandbox_run"):
            p50, p95 = summary(res[key])
            cells.append(f"{p50:.2f} / {p95:.2f}")
            ratios.append(f"{p50 / summary(base[key])[0]:.2f}x")
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")
    if args.json:
        print(
            json.dumps(
                {k: {m: (v if m == "ready_s" else summary(v)) for m, v in r.items()} for k, r in results.items()}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
