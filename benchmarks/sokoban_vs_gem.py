"""Sokoban: rock_env's native env vs gem-llm 0.1.0 on the same seeds, in one run.

For ``easy`` and ``hard`` it measures, ours and GEM's side by side on the same seeds:

* ``reset(seed)`` latency, p50 and p95, wall clock and CPU time of the thread (the CPU time is
  not inflated when other processes preempt the benchmark on a shared machine); it also
  checks that both give the identical level for every seed. Each side runs in its own
  process (so neither pays for garbage collections triggered by the other's garbage) and
  the seeds are interleaved (GEM's reset(seed), ours, next seed) so that load hits both alike;
* ``step()`` throughput (steps/s, step time only, random valid moves);
* end-to-end random-policy steps/s including ``reset(seed)`` at every episode start (GEM's
  episodes, then ours, in this process);
* peak memory of one env over construction, a reset and an episode (``tracemalloc``).

Usage::

    .venv/bin/python benchmarks/sokoban_vs_gem.py                     # defaults below
    .venv/bin/python benchmarks/sokoban_vs_gem.py --easy-seeds 200 --hard-seeds 40 --e2e-episodes 20

Every row but one runs ours without its optional level cache (every reset generates its
level); the row "ours with a warm level cache" reads the same levels back from the cache.
"""

from __future__ import annotations

import argparse
import copy
import gc
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "easy": {"dim_room": (6, 6), "num_boxes": 2, "max_turns": 20},
    "hard": {"dim_room": (8, 8), "num_boxes": 4, "max_turns": 50},
}
MOVES = ("\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def make_gem(variant: str) -> Any:
    from gem.envs.game_env.sokoban import SokobanEnv as GemSokoban

    return GemSokoban(**VARIANTS[variant])


def make_ours(variant: str, level_cache: str | bool = False) -> Any:
    from rock_env.games.sokoban import SokobanEnv

    return SokobanEnv(**VARIANTS[variant], level_cache=level_cache)


def _reset_worker(side: str, variant: str, conn: Connection, cache_dir: str, seeds: list[int]) -> None:
    """Process body: build one env, then time ``reset(seed)`` for every seed sent.

    Side ``cached`` is ours with the on-disk level cache, filled with every seed before timing.
    """
    if side == "gem":
        env = make_gem(variant)
    elif side == "cached":
        env = make_ours(variant, level_cache=cache_dir)
        for seed in seeds:
            env.reset(seed=seed)
    else:
        env = make_ours(variant)
    conn.send("ready")
    while True:
        seed = conn.recv()
        if seed is None:
            break
        c0, t0 = time.thread_time(), time.perf_counter()
        out = env.reset(seed=seed)
        c1, t1 = time.thread_time(), time.perf_counter()
        conn.send((t1 - t0, c1 - c0, out))
    conn.close()


def bench_reset(variant: str, seeds: list[int], cache_dir: str) -> dict[str, list[float]]:
    """Each side runs in its own process (own heap and garbage collector); the seeds are
    interleaved: GEM's reset(seed), then ours, then ours with a warm level cache, then the next
    seed. Levels must be identical."""
    ctx = mp.get_context("spawn")
    conns: dict[str, Connection] = {}
    procs = []
    for side in ("gem", "ours", "cached"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_reset_worker, args=(side, variant, child, cache_dir, seeds), daemon=True)
        proc.start()
        conns[side] = parent
        procs.append(proc)
    try:
        for conn in conns.values():
            if conn.recv() != "ready":
                raise SystemExit("a reset worker failed to start")
        times: dict[str, list[float]] = {side + kind: [] for side in conns for kind in ("", "_cpu")}
        for seed in seeds:
            outs = {}
            for side, conn in conns.items():
                conn.send(seed)
                wall, cpu, outs[side] = conn.recv()
                times[side].append(wall)
                times[side + "_cpu"].append(cpu)
            if not outs["gem"] == outs["ours"] == outs["cached"]:
                raise SystemExit(f"{variant} seed {seed}: levels differ; the benchmark compares identical levels only")
        return times
    finally:
        for conn in conns.values():
            conn.send(None)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def bench_steps(variant: str, seeds: list[int], steps_per_side: int) -> dict[str, float]:
    """Steps/s of step() alone, random valid moves. Each env is reset once per seed; when an
    episode ends, play restarts from a copy of the freshly reset env (untimed, no new level)."""
    out: dict[str, float] = {}
    for name, factory in (("gem", make_gem), ("ours", make_ours)):
        env = factory(variant)
        starts = []
        for seed in seeds:
            env.reset(seed=seed)
            starts.append(copy.deepcopy(env))
        rnd = random.Random(0)
        total = 0.0
        done_steps = 0
        episode = 0
        env = copy.deepcopy(starts[0])
        while done_steps < steps_per_side:
            action = MOVES[rnd.randrange(4)]
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            total += time.perf_counter() - t0
            done_steps += 1
            if terminated or truncated:
                episode += 1
                env = copy.deepcopy(starts[episode % len(starts)])
        out[name] = done_steps / total
    return out


def bench_end_to_end(variant: str, seeds: list[int]) -> dict[str, float]:
    """Random-policy steps/s over whole episodes, ``reset(seed)`` included."""
    out: dict[str, float] = {}
    for name, factory in (("gem", make_gem), ("ours", make_ours)):
        env = factory(variant)
        rnd = random.Random(1)
        steps = 0
        t0 = time.perf_counter()
        for seed in seeds:
            env.reset(seed=seed)
            while True:
                steps += 1
                _, _, terminated, truncated, _ = env.step(MOVES[rnd.randrange(4)])
                if terminated or truncated:
                    break
        out[name] = steps / (time.perf_counter() - t0)
    return out


def bench_memory(variant: str, seeds: list[int]) -> dict[str, float]:
    """Median peak bytes (tracemalloc) to build one env, reset it with a seed and play an episode.

    GEM's constructor runs an unseeded reset of its own (counted: it is part of building it).
    """
    out: dict[str, float] = {}
    builders: dict[str, Callable[[], Any]] = {"gem": lambda: make_gem(variant), "ours": lambda: make_ours(variant)}
    for name, build in builders.items():
        peaks = []
        for seed in seeds:
            gc.collect()
            tracemalloc.start()
            env = build()
            env.reset(seed=seed)
            rnd = random.Random(seed)
            while True:
                _, _, terminated, truncated, _ = env.step(MOVES[rnd.randrange(4)])
                if terminated or truncated:
                    break
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            del env
        out[name] = statistics.median(peaks)
    return out


def fmt_ratio(gem: float, ours: float, higher_is_better: bool) -> str:
    ratio = ours / gem if higher_is_better else gem / ours
    return f"{ratio:.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--easy-seeds", type=int, default=200)
    parser.add_argument("--hard-seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--e2e-episodes", type=int, default=10, help="episodes per side for hard end-to-end")
    parser.add_argument("--step-count", type=int, default=20000)
    parser.add_argument("--memory-seeds", type=int, default=3)
    args = parser.parse_args(argv)

    # Warm imports (gem's package import takes a second).
    make_gem("easy").reset(seed=0)
    make_ours("easy").reset(seed=0)

    rows: list[str] = ["| variant | metric | GEM 0.1.0 | rock_env | ours vs GEM |", "|---|---|---|---|---|"]
    for variant in ("easy", "hard"):
        n = args.easy_seeds if variant == "easy" else args.hard_seeds
        seeds = list(range(args.first_seed, args.first_seed + n))
        print(f"[{variant}] reset on {n} seeds ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="rock-bench-levels-") as cache_dir:
            times = bench_reset(variant, seeds, cache_dir)
        for label, q, kind in (
            ("reset p50 (wall)", 0.5, ""),
            ("reset p95 (wall)", 0.95, ""),
            ("reset p50 (CPU)", 0.5, "_cpu"),
            ("reset p95 (CPU)", 0.95, "_cpu"),
        ):
            g, o = percentile(times["gem" + kind], q), percentile(times["ours" + kind], q)
            rows.append(f"| {variant} | {label} | {g * 1e3:.2f} ms | {o * 1e3:.3f} ms | {fmt_ratio(g, o, False)} |")
        g, o = statistics.fmean(times["gem"]), statistics.fmean(times["ours"])
        rows.append(
            f"| {variant} | reset mean (wall) | {g * 1e3:.2f} ms | {o * 1e3:.3f} ms | {fmt_ratio(g, o, False)} |"
        )
        g, o = percentile(times["gem"], 0.5), percentile(times["cached"], 0.5)
        rows.append(
            f"| {variant} | reset p50 (wall), ours with a warm level cache (optional) | {g * 1e3:.2f} ms "
            f"| {o * 1e3:.3f} ms | {fmt_ratio(g, o, False)} |"
        )
        print(f"[{variant}] step throughput ...", file=sys.stderr, flush=True)
        steps = bench_steps(variant, seeds[:5], args.step_count)
        rows.append(
            f"| {variant} | step() | {steps['gem']:,.0f} steps/s | {steps['ours']:,.0f} steps/s "
            f"| {fmt_ratio(steps['gem'], steps['ours'], True)} |"
        )
        e2e_seeds = seeds if variant == "easy" else seeds[: args.e2e_episodes]
        print(f"[{variant}] end-to-end on {len(e2e_seeds)} episodes ...", file=sys.stderr, flush=True)
        e2e = bench_end_to_end(variant, e2e_seeds)
        rows.append(
            f"| {variant} | end-to-end random policy ({len(e2e_seeds)} episodes) | {e2e['gem']:,.0f} steps/s "
            f"| {e2e['ours']:,.0f} steps/s | {fmt_ratio(e2e['gem'], e2e['ours'], True)} |"
        )
        print(f"[{variant}] memory ...", file=sys.stderr, flush=True)
        mem = bench_memory(variant, seeds[: args.memory_seeds])
        rows.append(
            f"| {variant} | peak memory per env | {mem['gem'] / 1024:,.0f} KiB | {mem['ours'] / 1024:,.0f} KiB "
            f"| {fmt_ratio(mem['gem'], mem['ours'], False)} less |"
        )
    print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
