"""Remote backend vs in-process, side by side in one run.

    .venv/bin/python benchmarks/remote_env.py                  # everything, defaults below
    .venv/bin/python benchmarks/remote_env.py --clients 200 --duration 60

1. single env: ``rock.make(id)`` step vs ``rock.make(id, backend="remote")`` step (p50/p95, ratio);
2. batched: ``rock.make_vec(id, 256)`` local vs ``backend="remote"`` (env-steps/s);
3. sandbox: ``sb.run("true")`` on a local SDK sandbox vs through the admin (p50/p95);
4. stream: ``sb.stream(cmd)`` through the admin over server-sent events vs a WebSocket
   (``transport="ws"``): time to the end of a short command, and of a 5,000-line one;
5. load: N concurrent clients, each with its own remote env, stepping for a fixed time
   (throughput, p50/p99 latency, errors), spread over a few client processes. The load
   clients speak minimal keep-alive HTTP/1.1 so that the generator is not the bottleneck.

The admin runs as a separate process (``rock-env admin start``), like in production.

``--compare-server`` instead runs the single-env and load parts against three admins side by
side, in rotating rounds: ``before`` (``server.gc_freeze=false``), ``gc_freeze`` (the startup
heap frozen out of the garbage collector; the default) and ``gc_freeze+one_write`` (also one
write per response, ``ROCK_ENV_UVICORN_HTTP=coalescing``, :mod:`rock_env.server.http_protocol`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import rock_env as rock
from rock_env.server.testing import ServerProcess

MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def time_steps(env: Any, n: int, seed: int = 0) -> list[float]:
    """Latencies (s) of ``n`` steps with random moves, resetting at episode ends."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for i in rng.integers(0, 4, n):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(MOVES[int(i)])
        out.append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset()
    return out


def bench_single(url: str, env_id: str, n: int, rounds: int) -> dict[str, Any]:
    local = rock.make(env_id)
    remote = rock.make(env_id, backend="remote", base_url=url)
    time_steps(remote, 200)  # warm up the connection and the server
    loc: list[float] = []
    rem: list[float] = []
    for r in range(rounds):  # interleaved rounds: both sides see the same machine load
        loc += time_steps(local, n, seed=r)
        rem += time_steps(remote, n, seed=r)
    remote.close()
    local.close()
    return {
        "local_p50_us": pct(loc, 50) * 1e6,
        "local_p95_us": pct(loc, 95) * 1e6,
        "remote_p50_us": pct(rem, 50) * 1e6,
        "remote_p95_us": pct(rem, 95) * 1e6,
        "remote_over_local_p50": pct(rem, 50) / pct(loc, 50),
    }


def vec_rate(vec: Any, num_envs: int, steps: int) -> list[float]:
    """Env-steps/s of each of ``steps`` vector steps."""
    rng = np.random.default_rng(0)
    vec.reset(seed=0)
    rates = []
    for _ in range(steps):
        actions = [MOVES[int(i)] for i in rng.integers(0, 4, num_envs)]
        start = time.perf_counter()
        vec.step(actions)
        rates.append(num_envs / (time.perf_counter() - start))
    return rates


def bench_vec(url: str, env_id: str, num_envs: int, steps: int) -> dict[str, Any]:
    local = rock.make_vec(env_id, num_envs)
    remote = rock.make_vec(env_id, num_envs, backend="remote", base_url=url)
    vec_rate(remote, num_envs, 5)
    loc: list[float] = []
    rem: list[float] = []
    for _ in range(3):  # interleaved rounds
        loc += vec_rate(local, num_envs, steps // 3)
        rem += vec_rate(remote, num_envs, steps // 3)
    local.close()
    remote.close()
    return {
        "num_envs": num_envs,
        "local_env_steps_per_s_median": statistics.median(loc),
        "remote_env_steps_per_s_median": statistics.median(rem),
        "remote_env_steps_per_s_p5": pct(rem, 5),
        "remote_over_local": statistics.median(rem) / statistics.median(loc),
    }


def time_runs(run: Callable[[str], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        result = run("true")
        out.append(time.perf_counter() - start)
        assert result.exit_code == 0, result
    return out


def bench_sandbox(url: str, runtime: str, n: int) -> dict[str, Any]:
    with rock.Sandbox(runtime=runtime) as local, rock.Sandbox(runtime=runtime, base_url=url) as remote:
        time_runs(local.run, 20)
        time_runs(remote.run, 20)
        loc: list[float] = []
        rem: list[float] = []
        for _ in range(4):
            loc += time_runs(local.run, n // 4)
            rem += time_runs(remote.run, n // 4)
    return {
        "runtime": runtime,
        "local_run_p50_ms": pct(loc, 50) * 1e3,
        "local_run_p95_ms": pct(loc, 95) * 1e3,
        "remote_run_p50_ms": pct(rem, 50) * 1e3,
        "remote_run_p95_ms": pct(rem, 95) * 1e3,
        "overhead_p50_ms": (pct(rem, 50) - pct(loc, 50)) * 1e3,
    }


def time_streams(sb: Any, cmd: str, transport: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        stream = sb.stream(cmd, transport=transport)
        text = "".join(stream)
        out.append(time.perf_counter() - start)
        assert stream.exit_code == 0 and text, (stream.exit_code, text[:100])
    return out


def bench_stream(url: str, runtime: str, n: int) -> dict[str, Any]:
    short, long = "echo hi", "seq 1 5000"
    result: dict[str, Any] = {"runtime": runtime}
    with rock.Sandbox(runtime=runtime, base_url=url) as sb:
        for name, cmd, count in (("short", short, n), ("5000_lines", long, max(4, n // 10))):
            times: dict[str, list[float]] = {"sse": [], "ws": []}
            for transport in times:
                time_streams(sb, cmd, transport, 3)
            for _ in range(4):  # interleaved rounds
                for transport in times:
                    times[transport] += time_streams(sb, cmd, transport, max(1, count // 4))
            for transport, values in times.items():
                result[f"{name}_{transport}_p50_ms"] = pct(values, 50) * 1e3
                result[f"{name}_{transport}_p95_ms"] = pct(values, 95) * 1e3
    return result


class _RawHttp:
    """A minimal keep-alive HTTP/1.1 JSON client (the load generator must not be the bottleneck)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> _RawHttp:
        import socket

        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return status, json.loads(payload) if payload else None

    def close(self) -> None:
        self.writer.close()


async def _client_loop(url: str, env_id: str, stop_at: float, lat: list[float], errors: list[str]) -> int:
    steps = 0
    try:
        http = await _RawHttp.connect(url)
        status, made = await http.request("POST", "/api/v1/envs", {"env_id": env_id})
        if status != 200:
            errors.append(f"make: HTTP {status} {made}")
            return 0
        env = made["id"]
        await http.request("POST", f"/api/v1/envs/{env}/reset", {"seed": 0})
    except Exception as exc:
        errors.append(f"make: {exc!r}")
        return 0
    rng = np.random.default_rng()
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            status, body = await http.request(
                "POST", f"/api/v1/envs/{env}/step", {"action": MOVES[int(rng.integers(0, 4))]}
            )
            if status != 200:
                errors.append(f"HTTP {status}: {str(body)[:200]}")
                continue
            lat.append(time.perf_counter() - start)
            steps += 1
            if body["terminated"] or body["truncated"]:
                await http.request("POST", f"/api/v1/envs/{env}/reset", {})
        except Exception as exc:
            errors.append(repr(exc))
            break
    await http.request("DELETE", f"/api/v1/envs/{env}")
    http.close()
    return steps


def _load_proc(url: str, env_id: str, clients: int, start_at: float, duration: float, out: Any) -> None:
    async def main() -> tuple[int, list[float], list[str]]:
        while time.time() < start_at:
            await asyncio.sleep(0.01)
        stop_at = time.perf_counter() + duration
        lat: list[float] = []
        errors: list[str] = []
        counts = await asyncio.gather(*(_client_loop(url, env_id, stop_at, lat, errors) for _ in range(clients)))
        return sum(counts), lat, errors

    steps, lat, errors = asyncio.run(main())
    out.put((steps, lat, errors))


def bench_load(url: str, env_id: str, clients: int, duration: float, procs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_load_proc, args=(url, env_id, n, start_at, duration, queue)) for n in per]
    for w in workers:
        w.start()
    results = [queue.get(timeout=duration + 120) for _ in workers]
    for w in workers:
        w.join(30)
    steps = sum(r[0] for r in results)
    lat = [x for r in results for x in r[1]]
    errors = [x for r in results for x in r[2]]
    return {
        "clients": clients,
        "client_processes": procs,
        "duration_s": duration,
        "steps": steps,
        "steps_per_s": steps / duration,
        "p50_ms": pct(lat, 50) * 1e3 if lat else None,
        "p99_ms": pct(lat, 99) * 1e3 if lat else None,
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare_server(args: argparse.Namespace) -> dict[str, Any]:
    """Single-env step and N-client load against the server variants (see the module doc), alternating."""
    protocols: dict[str, tuple[dict[str, str], list[str]]] = {
        "before": ({}, ["server.gc_freeze=false"]),
        "gc_freeze": ({}, []),  # the default
        "gc_freeze+one_write": ({"ROCK_ENV_UVICORN_HTTP": "coalescing"}, []),
    }
    singles: dict[str, list[dict[str, Any]]] = {name: [] for name in protocols}
    loads: dict[str, list[dict[str, Any]]] = {name: [] for name in protocols}
    with tempfile.TemporaryDirectory() as tmp:
        admins = {}
        for name, (env, overrides) in protocols.items():
            os.makedirs(f"{tmp}/{name}")
            admins[name] = ServerProcess.admin(f"{tmp}/{name}", "server.env_idle_ttl=600", *overrides, env=env).start()
        try:
            names = list(admins)
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no variant always goes first
                for name in order:
                    admin = admins[name]
                    singles[name].append(bench_single(admin.url, args.env, args.steps, 1))
                    cpu = cpu_seconds(admin.pid)
                    load = bench_load(admin.url, args.env, args.clients, args.duration, args.client_procs)
                    load["server_cpu_us_per_step"] = (cpu_seconds(admin.pid) - cpu) / max(load["steps"], 1) * 1e6
                    loads[name].append(load)
                    print(
                        f"round {r} {name:<19} single p50 {singles[name][-1]['remote_p50_us']:.0f} us | "
                        f"{args.clients} clients {load['steps_per_s']:,.0f} steps/s p50 {load['p50_ms']:.1f} ms "
                        f"p99 {load['p99_ms']:.1f} ms, server CPU {load['server_cpu_us_per_step']:.0f} us/step, "
                        f"errors {load['errors']}",
                        flush=True,
                    )
        finally:
            for admin in admins.values():
                admin.stop()
    out: dict[str, Any] = {}
    for name in protocols:
        out[name] = {
            "single_p50_us_median": statistics.median(x["remote_p50_us"] for x in singles[name]),
            "load_steps_per_s_median": statistics.median(x["steps_per_s"] for x in loads[name]),
            "load_p50_ms_median": statistics.median(x["p50_ms"] for x in loads[name]),
            "load_p99_ms_median": statistics.median(x["p99_ms"] for x in loads[name]),
            "server_cpu_us_per_step_median": statistics.median(x["server_cpu_us_per_step"] for x in loads[name]),
            "errors": sum(x["errors"] for x in loads[name]),
        }
        o = out[name]
        print(
            f"{name:<19} median of {args.rounds} rounds: single p50 {o['single_p50_us_median']:.0f} us | "
            f"{o['load_steps_per_s_median']:,.0f} steps/s, p50 {o['load_p50_ms_median']:.1f} ms, "
            f"p99 {o['load_p99_ms_median']:.1f} ms, server CPU {o['server_cpu_us_per_step_median']:.0f} us/step, "
            f"errors {o['errors']}",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="game:Sokoban-v0-easy")
    parser.add_argument("--steps", type=int, default=500, help="single-env steps per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--vec-steps", type=int, default=30)
    parser.add_argument("--runtime", default="namespace", help="sandbox runtime for the round-trip test")
    parser.add_argument("--sandbox-runs", type=int, default=400)
    parser.add_argument("--streams", type=int, default=100, help="short streamed commands per transport")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: single,vec,sandbox,stream,load")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--compare-server", action="store_true", help="server variants side by side (see above)")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.compare_server:
        compared = compare_server(args)
        if args.json:
            print(json.dumps(compared, indent=2))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess.admin(tmp, "server.env_idle_ttl=600") as admin:
        print(f"admin at {admin.url} (pid {admin.pid}); env {args.env}", flush=True)
        if "single" not in skip:
            results["single"] = r = bench_single(admin.url, args.env, args.steps, args.rounds)
            print(
                f"single env step   local p50 {r['local_p50_us']:.0f} us p95 {r['local_p95_us']:.0f} us | "
                f"remote p50 {r['remote_p50_us']:.0f} us p95 {r['remote_p95_us']:.0f} us "
                f"(x{r['remote_over_local_p50']:.1f})",
                flush=True,
            )
        if "vec" not in skip:
            results["vec"] = r = bench_vec(admin.url, args.env, args.num_envs, args.vec_steps)
            print(
                f"make_vec({r['num_envs']})     local {r['local_env_steps_per_s_median']:,.0f} env-steps/s | "
                f"remote {r['remote_env_steps_per_s_median']:,.0f} env-steps/s "
                f"(p5 {r['remote_env_steps_per_s_p5']:,.0f}, x{r['remote_over_local']:.2f} of local)",
                flush=True,
            )
        if "sandbox" not in skip:
            results["sandbox"] = r = bench_sandbox(admin.url, args.runtime, args.sandbox_runs)
            print(
                f"sandbox run('true') [{r['runtime']}]  local p50 {r['local_run_p50_ms']:.2f} ms p95 "
                f"{r['local_run_p95_ms']:.2f} ms | via admin p50 {r['remote_run_p50_ms']:.2f} ms p95 "
                f"{r['remote_run_p95_ms']:.2f} ms (+{r['overhead_p50_ms']:.2f} ms)",
                flush=True,
            )
        if "stream" not in skip:
            results["stream"] = r = bench_stream(admin.url, args.runtime, args.streams)
            for name in ("short", "5000_lines"):
                print(
                    f"stream {name:<10} [{r['runtime']}]  sse p50 {r[f'{name}_sse_p50_ms']:.2f} ms p95 "
                    f"{r[f'{name}_sse_p95_ms']:.2f} ms | ws p50 {r[f'{name}_ws_p50_ms']:.2f} ms p95 "
                    f"{r[f'{name}_ws_p95_ms']:.2f} ms",
                    flush=True,
                )
        if "load" not in skip:
            results["load"] = r = bench_load(admin.url, args.env, args.clients, args.duration, args.client_procs)
            print(
                f"{r['clients']} clients x {r['duration_s']:.0f}s  {r['steps_per_s']:,.0f} steps/s, "
                f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']} {r['first_errors']}",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
