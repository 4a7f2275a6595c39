"""Claims: (1) `run_rollout` records every step for a few tens of µs per step over a bare loop;
(2) with a chat model that takes ~20 ms per reply, `num_envs=8` runs episodes several times
faster than `num_envs=1` (policy calls go out in one thread per env slot).

Part 1 runs, interleaved in one process, the same episodes (Sokoban easy, the same per-episode
seeds from ``episode_seeds``) two ways: a bare ``reset``/``step`` loop that keeps nothing (the
reference) and ``run_rollout`` writing trajectories.jsonl, episodes.jsonl and summary.json
(ours), for the solver policy (``policy=scripted``) and the random policy. It prints the median
and p95 over ``--repeats`` rounds of µs per env step and the ratio ours / bare.

Part 2 starts a stub OpenAI-compatible server on 127.0.0.1 (free port) that answers every chat
request after ``--model-ms`` milliseconds with a random Sokoban move, and runs
``run_rollout(policy=openai)`` with ``num_envs=1`` and ``num_envs=8``; it prints wall time per
episode (median, p95 over rounds) and the speed-up.

    .venv/bin/python benchmarks/rollout_overhead.py [--episodes 100] [--repeats 5] [--model-ms 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import rock_env as rock
from rock_env.config import compose_config, validate_rollout_config
from rock_env.policies import make_policy
from rock_env.rollout import episode_seeds, run_rollout

MOVES = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bare_loop(cfg: Any) -> tuple[float, int]:
    """The reference: the same episodes with no recording. Returns (seconds, steps)."""
    config = validate_rollout_config(cfg)
    env = rock.make(config.env.id)
    policy = make_policy(config.policy)
    steps = 0
    try:
        start = time.perf_counter()
        for seed in episode_seeds(config.seed, config.episodes):
            obs, info = env.reset(seed=seed)
            policy.reset(env, obs, info, seed=seed)
            done = False
            while not done:
                action = policy.act(env, obs, info)
                obs, _, terminated, truncated, info = env.step(action)
                steps += 1
                done = terminated or truncated
        return time.perf_counter() - start, steps
    finally:
        policy.close()
        env.close()


def ours(cfg: Any, out: Path) -> tuple[float, int]:
    """run_rollout with every record written. Returns (seconds, steps) of the episode loop."""
    result = run_rollout(cfg, out)
    return result.wall_time, result.total_steps


def part1(episodes: int, repeats: int, tmp: Path) -> None:
    print(f"## Recording overhead: Sokoban easy, {episodes} episodes per round, {repeats} rounds (µs per env step)\n")
    print("| policy | bare loop p50 | bare p95 | run_rollout p50 | run_rollout p95 | ratio (p50) | µs added/step |")
    print("|---|---|---|---|---|---|---|")
    for policy in ("scripted", "random"):
        cfg = compose_config(
            ["env=sokoban_easy", f"policy={policy}", f"episodes={episodes}", "seed=0", "progress=false"]
        )
        bare_us: list[float] = []
        ours_us: list[float] = []
        for r in range(repeats):
            secs, steps = bare_loop(cfg)
            bare_us.append(secs / steps * 1e6)
            secs2, steps2 = ours(cfg, tmp / f"{policy}-{r}")
            assert steps2 == steps, (steps, steps2)  # the very same episodes
            ours_us.append(secs2 / steps2 * 1e6)
        b, o = statistics.median(bare_us), statistics.median(ours_us)
        print(
            f"| {policy} | {b:.1f} | {percentile(bare_us, 0.95):.1f} | {o:.1f} | {percentile(ours_us, 0.95):.1f} "
            f"| {o / b:.2f}x | {o - b:.1f} |"
        )
    print()


class StubModel:
    """An OpenAI-compatible server that answers after ``delay`` seconds with a random move."""

    def __init__(self, delay: float) -> None:
        rng = random.Random(0)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep the output clean
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay)
                with lock:
                    move = rng.choice(MOVES)
                body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": move}}]}
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def part2(episodes: int, repeats: int, model_ms: float, tmp: Path) -> None:
    stub = StubModel(model_ms / 1000)
    try:
        print(f"## Chat-model policy: stub model answering in {model_ms:g} ms, {episodes} episodes per round\n")
        print("| num_envs | ms per episode p50 | p95 | steps/s p50 | speed-up vs num_envs=1 (p50) |")
        print("|---|---|---|---|---|")
        base = None
        for num_envs in (1, 8):
            per_episode: list[float] = []
            rates: list[float] = []
            for r in range(repeats):
                cfg = compose_config(
                    ["env=sokoban_easy", "policy=openai", f"policy.base_url={stub.url}", f"episodes={episodes}",
                     f"num_envs={num_envs}", "seed=0", "progress=false"]
                )  # fmt: skip
                result = run_rollout(cfg, tmp / f"openai-{num_envs}-{r}")
                per_episode.append(result.wall_time / len(result.episodes) * 1e3)
                rates.append(result.total_steps / result.wall_time)
            med = statistics.median(per_episode)
            base = base or med
            print(
                f"| {num_envs} | {med:.1f} | {percentile(per_episode, 0.95):.1f} | {statistics.median(rates):.0f} "
                f"| {base / med:.2f}x |"
            )
        print()
    finally:
        stub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-ms", type=float, default=20.0)
    parser.add_argument("--model-episodes", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        part1(args.episodes, args.repeats, Path(tmp))
        part2(args.model_episodes, max(1, args.repeats // 2), args.model_ms, Path(tmp))


if __name__ == "__main__":
    main()
