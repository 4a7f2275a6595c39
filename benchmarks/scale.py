"""Thousands of remote envs from one trainer process: the data plane at scale.

    .venv/bin/python benchmarks/scale.py                                  # everything below, 10,000 envs
    .venv/bin/python benchmarks/scale.py --envs 2000 --steps 20 --targets default --clients asyncio
    .venv/bin/python benchmarks/scale.py --sandboxes 1000 --targets embedded --clients none

For each target (a fresh ``rock-env admin start`` child process on loopback):

* ``default``: ``rock-env admin start`` as it comes: one worker process per core (``workers=auto``),
  each serving its envs directly to the client;
* ``embedded``: ``workers=0``, the admin hosts every env in its own process;
* ``workersN``: ``workers=N`` worker processes;
* ``rayN``: a simulated N-node Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``) and the
  admin with ``cluster=ray``: one worker actor per node, reached directly too;

and each client style (all from this one process):

* ``threads``: 64 threads, each owning envs/64 ``rock.make(..., backend="remote", coalesce=True)``
  envs and stepping them one after the other (64 calls in flight, batched by the client);
* ``asyncio``: one event loop, ``await rock.amake(..., coalesce=True)`` envs; every env runs its
  own agent loop (step, reset when done), with at most ``--in-flight`` steps outstanding at once
  (the trainer's policy capacity; by Little's law a p99 of 50 ms at 20,000 steps/s allows about
  1,000 in flight, so all 10,000 at once would measure the queue, not the step);
* ``vec``: ``rock.make_vec(..., 256, backend="remote")`` vector envs;

it makes ``--envs`` Sokoban envs, resets them and steps each ``--steps`` times, and prints wall
time to place (make) all, to reset all, aggregate steps/s, p50/p99 latency of a step (a single
env's step; for ``vec`` one batched call), the peak of this process's open file descriptors, and
the memory per env the workers measured (``/api/v1/workers``). ``--gc tuned`` (the default) calls
``rock.tune_gc()`` once the envs are made, as the README advises trainers with thousands of envs;
``--gc default`` leaves CPython's collector as it is. ``--sandboxes N`` also creates N namespace
sandboxes at once through the first target (create p50/p99 beside ROCK's published
1,000-concurrent P50 4.93 s / P99 8.69 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import rock_env as rock
from rock_env.remote.pool import aclose_shared, close_shared, open_fds
from rock_env.server.testing import ServerProcess

ENV_ID = "game:Sokoban-v0-easy"
MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]
ROCK_P50, ROCK_P99 = 4.93, 8.69
#: No quota, no idle reaping: the benchmark holds every env for the whole run.
UNLIMITED = (
    "limits.max_envs=null",
    "limits.max_vec_envs=null",
    "limits.max_sandboxes=null",
    "server.env_idle_ttl=null",
    "server.log_level=warning",
    "worker.log_level=warning",
)


class FdPeak:
    """Samples this process's open file descriptors every 50 ms; ``peak`` is the most seen."""

    def __init__(self) -> None:
        self.peak = open_fds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, open_fds())

    def __enter__(self) -> FdPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, open_fds())


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def wait_workers(url: str, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = httpx.get(url + "/api/v1/workers", timeout=30).json()["workers"]
        if sum(1 for w in workers if w["status"] == "alive") >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{count} workers did not register with {url} in {timeout:.0f}s")


def worker_memory(url: str) -> dict[str, Any]:
    """Memory per env as the workers measured it, and how many light envs they host."""
    workers = httpx.get(url + "/api/v1/workers", timeout=60).json()["workers"]
    return {
        "env_memory_bytes": [w["capacity"]["env_memory"] for w in workers],
        "light_envs": [w["light_envs"] for w in workers],
        "max_envs": [w["capacity"]["max_envs"] for w in workers],
    }


@contextmanager
def ray_cluster(nodes: int) -> Iterator[str]:
    """A Ray cluster of ``nodes`` nodes on 127.0.0.1 (head + nodes-1); its GCS address."""
    from rock_env.server.cluster.ray_backend import LOOPBACK_ENV_VAR

    os.environ[LOOPBACK_ENV_VAR] = "0"
    temp = tempfile.mkdtemp(prefix="rock-ray-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp
    os.mkdir(os.path.join(temp, "ray"))
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": os.path.join(temp, "ray")},
    )
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@contextmanager
def target(name: str, tmp: Path) -> Iterator[str]:
    """Start the admin of target ``name``; its URL."""
    if name == "embedded":
        with ServerProcess.admin(tmp, "workers=0", *UNLIMITED) as admin:
            yield admin.url
    elif name == "default":
        with ServerProcess.admin(tmp, "workers=auto", *UNLIMITED) as admin:
            wait_workers(admin.url, os.cpu_count() or 1)
            yield admin.url
    elif name.startswith("workers"):
        count = int(name[len("workers") :])
        with ServerProcess.admin(tmp, f"workers={count}", *UNLIMITED) as admin:
            wait_workers(admin.url, count)
            yield admin.url
    elif name.startswith("ray"):
        nodes = int(name[3:])
        from rock_env.server.cluster.ray_backend import LOOPBACK_ENV_VAR

        with ray_cluster(nodes) as address:
            admin = ServerProcess.admin(
                tmp, "cluster=ray", f"cluster.address={address}", *UNLIMITED, env={LOOPBACK_ENV_VAR: "0"}
            )
            with admin.start(timeout=300):
                wait_workers(admin.url, nodes)
                yield admin.url
    else:
        raise SystemExit(f"unknown target {name!r}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def run_threads(url: str, envs: int, steps: int, opts: argparse.Namespace, threads: int = 64) -> dict[str, Any]:
    with ThreadPoolExecutor(threads) as pool:
        place, handles = timed(
            lambda: list(
                pool.map(lambda _: rock.make(ENV_ID, backend="remote", base_url=url, coalesce=True), range(envs))
            )
        )
        reset, _ = timed(lambda: list(pool.map(lambda p: p[1].reset(seed=p[0]), enumerate(handles))))
        shards = [handles[i::threads] for i in range(threads)]
        tune(opts)

        def play(shard: list[Any]) -> list[float]:
            lat = []
            for k in range(steps):
                action = MOVES[k % 4]
                for env in shard:
                    t = time.perf_counter()
                    _, _, terminated, truncated, _ = env.step(action)
                    lat.append(time.perf_counter() - t)
                    if terminated or truncated:
                        env.reset()
            return lat

        wall, lats = timed(lambda: list(pool.map(play, shards)))
        rock.restore_gc()
        memory = worker_memory(url)
        list(pool.map(lambda e: e.close(), handles))
    flat = [x for lat in lats for x in lat]
    return {"place_s": place, "reset_s": reset, "step_wall_s": wall, "steps": len(flat), "lat": flat, **memory}


def tune(opts: argparse.Namespace) -> None:
    """``--gc tuned``: what the README advises a trainer with thousands of envs, once they are made."""
    if opts.gc == "tuned":
        rock.tune_gc()


def run_asyncio(url: str, envs: int, steps: int, opts: argparse.Namespace) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        t = time.perf_counter()
        handles = await asyncio.gather(*(rock.amake(ENV_ID, base_url=url, coalesce=True) for _ in range(envs)))
        place = time.perf_counter() - t
        t = time.perf_counter()
        await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(handles)))
        reset = time.perf_counter() - t
        tune(opts)
        lat: list[float] = []
        slots = asyncio.Semaphore(opts.in_flight)

        async def agent(env: Any) -> None:
            for k in range(steps):
                async with slots:
                    s = time.perf_counter()
                    _, _, terminated, truncated, _ = await env.astep(MOVES[k % 4])
                    lat.append(time.perf_counter() - s)
                if terminated or truncated:
                    async with slots:
                        await env.areset()

        t = time.perf_counter()
        await asyncio.gather(*(agent(e) for e in handles))
        wall = time.perf_counter() - t
        rock.restore_gc()
        memory = worker_memory(url)
        await asyncio.gather(*(e.aclose() for e in handles))
        await aclose_shared()
        return {"place_s": place, "reset_s": reset, "step_wall_s": wall, "steps": len(lat), "lat": lat, **memory}

    return asyncio.run(main())


def run_vec(url: str, envs: int, steps: int, opts: argparse.Namespace, width: int = 256) -> dict[str, Any]:
    count = max(1, envs // width)
    with ThreadPoolExecutor(min(count, 16)) as pool:
        place, vecs = timed(
            lambda: list(pool.map(lambda _: rock.make_vec(ENV_ID, width, backend="remote", base_url=url), range(count)))
        )
        reset, _ = timed(lambda: list(pool.map(lambda p: p[1].reset(seed=p[0] * width), enumerate(vecs))))
        tune(opts)

        def play(vec: Any) -> list[float]:
            lat = []
            for k in range(steps):
                t = time.perf_counter()
                vec.step([MOVES[k % 4]] * width)
                lat.append(time.perf_counter() - t)
            return lat

        wall, lats = timed(lambda: list(pool.map(play, vecs)))
        rock.restore_gc()
        memory = worker_memory(url)
        list(pool.map(lambda v: v.close(), vecs))
    flat = [x for lat in lats for x in lat]
    return {"place_s": place, "reset_s": reset, "step_wall_s": wall, "steps": len(flat) * width, "lat": flat, **memory}


def run_sandboxes(url: str, count: int) -> dict[str, Any]:
    """``count`` namespace sandboxes created at once through the admin (one event loop)."""

    async def main() -> dict[str, Any]:
        async def create() -> tuple[float, Any, str | None]:
            sb = rock.AsyncSandbox(runtime="namespace", base_url=url)
            t = time.perf_counter()
            try:
                await sb.start()
                return time.perf_counter() - t, sb, None
            except Exception as exc:
                return time.perf_counter() - t, None, f"{type(exc).__name__}: {exc}"[:200]

        t = time.perf_counter()
        results = await asyncio.gather(*(create() for _ in range(count)))
        wall = time.perf_counter() - t
        ok = [r for r in results if r[1] is not None]
        await asyncio.gather(*(r[1].stop() for r in ok), return_exceptions=True)
        errors = sorted({r[2] for r in results if r[2]})
        lat = [r[0] for r in ok]
        return {
            "created": len(ok),
            "asked": count,
            "wall_s": wall,
            "p50_s": pct(lat, 50),
            "p99_s": pct(lat, 99),
            "errors": errors[:5],
        }

    return asyncio.run(main())


RUNNERS: dict[str, Callable[[str, int, int, argparse.Namespace], dict[str, Any]]] = {
    "threads": run_threads,
    "asyncio": run_asyncio,
    "vec": run_vec,
}


def summary(
    target_name: str, client: str, result: dict[str, Any], fds: int, opts: argparse.Namespace
) -> dict[str, Any]:
    lat = result.pop("lat")
    return {
        "target": target_name,
        "client": client,
        "in_flight": {"threads": 64, "asyncio": opts.in_flight, "vec": max(1, opts.envs // 256)}.get(client),
        "gc": opts.gc,
        "place_s": round(result["place_s"], 2),
        "reset_s": round(result["reset_s"], 2),
        "steps_per_s": round(result["steps"] / result["step_wall_s"]),
        "step_p50_ms": round(pct(lat, 50) * 1e3, 2),
        "step_p99_ms": round(pct(lat, 99) * 1e3, 2),
        "client_fds_peak": fds,
        "env_memory_kb": [round(m / 1024, 1) for m in result["env_memory_bytes"]],
        "light_envs": result["light_envs"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--targets", default="default,embedded,ray4")
    parser.add_argument("--in-flight", type=int, default=512, help="asyncio: most steps outstanding at once")
    parser.add_argument("--gc", choices=("tuned", "default"), default="tuned", help="rock.tune_gc() after making")
    parser.add_argument("--clients", default="threads,asyncio,vec", help="comma list, or 'none'")
    parser.add_argument("--sandboxes", type=int, default=0, help="also create this many namespace sandboxes at once")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    clients = [] if args.clients == "none" else args.clients.split(",")
    rows: list[dict[str, Any]] = []
    print(f"# {args.envs} x {ENV_ID}, {args.steps} steps each; {os.cpu_count()} cores", flush=True)
    for name in args.targets.split(","):
        with tempfile.TemporaryDirectory(prefix="rock-scale-") as tmp, target(name, Path(tmp)) as url:
            for client in clients:
                with FdPeak() as fds:
                    result = RUNNERS[client](url, args.envs, args.steps, args)
                close_shared()  # each client style starts from no pooled connection
                row = summary(name, client, result, fds.peak, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
            if args.sandboxes and name == args.targets.split(",")[0]:
                row = {"target": name, "client": f"{args.sandboxes} namespace sandboxes at once"}
                row |= run_sandboxes(url, args.sandboxes)
                row |= {"rock_p50_s": ROCK_P50, "rock_p99_s": ROCK_P99}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
