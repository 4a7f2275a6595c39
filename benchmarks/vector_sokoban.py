"""Claim: rock_env's vector envs step 64 Sokoban envs at least as fast as GEM's `make_vec`.

Runs, in one process and on the same seeds and the same action sequence, four vector envs of
``--num-envs`` Sokoban envs: ours in ``sync`` and ``async`` mode (sub-envs from
``rock.make(id)``, i.e. our native Sokoban once it is registered, else GEM's) and GEM's
``gem.make_vec`` with ``async_mode=False`` (a loop) and ``True`` (a thread pool). When our id
resolves to a non-GEM env, ours is also run over GEM's own env objects, which isolates the
vector layer. All use SAME_STEP autoreset (GEM's only mode) and a random policy over the four
valid moves (drawn once, shared by all).

For each: build time, ``reset(seed)`` time, per-batch ``step`` latency p50/p95 and throughput in
env steps/s (median over ``--repeats`` rounds of ``--steps`` batch steps; the rounds of all cases
are interleaved so that a busy host slows all of them alike), and the ratio of throughput to
GEM's sync ``make_vec``. It also checks that the first observations are identical.

    .venv/bin/python benchmarks/vector_sokoban.py [--num-envs 64] [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import rock_env as rock
from rock_env.vector import make_vec

ACTIONS = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Case:
    """One vector env under test; rounds of all cases are interleaved so host load hits all alike."""

    def __init__(self, name: str, build: Callable[[], Any], seed: int) -> None:
        self.name = name
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # gem.make_vec prints
            self.envs = build()
        self.build_s = time.perf_counter() - start
        start = time.perf_counter()
        obs, _ = self.envs.reset(seed=seed)
        self.reset_s = time.perf_counter() - start
        self.first_obs = tuple(obs)
        self.rounds: list[float] = []
        self.latencies: list[float] = []

    def run_round(self, seed: int, plan: list[list[str]]) -> None:
        self.envs.reset(seed=seed)
        start = time.perf_counter()
        for actions in plan:
            t0 = time.perf_counter()
            self.envs.step(actions)
            self.latencies.append(time.perf_counter() - t0)
        self.rounds.append(len(plan[0]) * len(plan) / (time.perf_counter() - start))

    def close(self) -> None:
        close = getattr(self.envs, "close", None)
        if callable(close):
            close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="game:Sokoban-v0-easy")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="batch steps per round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=None, help="ours async (default: CPUs)")
    args = parser.parse_args()

    import gem

    n, env_id = args.num_envs, args.env_id
    spec = rock.spec(env_id)
    rng = random.Random(args.seed)
    plan = [[rng.choice(ACTIONS) for _ in range(n)] for _ in range(args.steps)]
    print(
        f"{n} x {env_id} (ours resolves to {spec.source}: {spec.to_dict()['entry_point']}), "
        f"{args.steps} batch steps x {args.repeats} rounds, CPUs available: {len(os.sched_getaffinity(0))}, "
        f"python {sys.version.split()[0]}"
    )

    def gem_env() -> Any:
        return gem.make(env_id)

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("gem make_vec sync", lambda: gem.make_vec([env_id] * n, async_mode=False, seed=args.seed)),
        ("gem make_vec async (threads)", lambda: gem.make_vec([env_id] * n, async_mode=True, seed=args.seed)),
        ("ours sync", lambda: rock.make_vec(env_id, n, mode="sync", autoreset_mode="same_step")),
        (
            "ours async",
            lambda: rock.make_vec(env_id, n, mode="async", autoreset_mode="same_step", num_workers=args.num_workers),
        ),
    ]
    if spec.source != "gem":
        cases += [
            ("ours sync, GEM env objects", lambda: make_vec([gem_env] * n, autoreset_mode="same_step")),
            (
                "ours async, GEM env objects",
                lambda: make_vec([gem_env] * n, mode="async", autoreset_mode="same_step", num_workers=args.num_workers),
            ),
        ]
    built: list[Case] = []
    try:
        for name, build in cases:
            built.append(Case(name, build, args.seed))
        for r in range(args.repeats):
            for case in built:
                case.run_round(args.seed + 1000 * (r + 1), plan)
    finally:
        for case in built:
            case.close()
    base = statistics.median(built[0].rounds)
    print(
        f"\n{'case':<30} {'build s':>8} {'reset s':>8} {'step p50 ms':>12} {'step p95 ms':>12} "
        f"{'env steps/s':>12} {'vs gem sync':>12}"
    )
    for case in built:
        rate = statistics.median(case.rounds)
        print(
            f"{case.name:<30} {case.build_s:8.2f} {case.reset_s:8.3f} {statistics.median(case.latencies) * 1000:12.2f} "
            f"{percentile(case.latencies, 0.95) * 1000:12.2f} {rate:12.0f} {rate / base:11.2f}x"
        )
    for case in built[1:]:
        same = sum(a == b for a, b in zip(case.first_obs, built[0].first_obs, strict=True))
        print(f"first observations identical to gem sync: {case.name}: {same}/{n}")


if __name__ == "__main__":
    main()
