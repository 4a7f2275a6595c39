"""tool:Bash-v0 reset latency per runtime: ours (one sandbox, snapshot restore) vs a fresh sandbox per episode.

    .venv/bin/python benchmarks/tool_env_reset.py [--reps 30] [--runtimes namespace,docker,local]

For each runtime, interleaved in one run so that machine load hits all sides alike:

* ``ours, after an episode``: ``env.reset()`` after a step that left a file and a background
  process behind (what a rollout does): kill the episode's processes, restore the task's
  snapshot, hand over a fresh bash session (made in the background during the episode), run
  the task's start script. A 50 ms pause before each reset stands for the model's think time.
* ``ours, clean``: ``env.reset()`` right after a reset (nothing ran in between).
* ``fresh sandbox per episode`` (the reference: what envs that start a container or
  namespace per episode pay, e.g. GEM's terminal env): start a sandbox, run the task's
  setup, open a bash session; stopping the old sandbox is not counted.
* floors: ``bwrap --unshare-all --ro-bind / / true`` (namespace) and ``docker run --rm
  --network none IMAGE true`` (docker).

Tasks cycle through a fixed list (files, text, git, processes) so that setup costs differ.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from _stats import fmt, timed

from rock_env.sandbox import Sandbox, SandboxConfig
from rock_env.tools.bash_env import BashEnv
from rock_env.tools.bash_tasks import builtin_tasks
from rock_env.tools.sandbox_env import SandboxEnv, sandbox_config

TASKS = ["files/find-large", "text/top-ips", "git/resolve-conflict", "proc/pid-file", "perm/world-writable"]
FLOOR_BWRAP = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"]
IMAGE = "rock-env/base:bookworm"


def fresh_episode(runtime: str, task_id: str) -> tuple[float, Sandbox]:
    """The reference: a new sandbox, the task's setup and a session; returns (seconds, sandbox)."""
    task = next(t for t in builtin_tasks() if t.id == task_id)
    fields = {"image": IMAGE} if runtime == "docker" else {}
    config: SandboxConfig = sandbox_config(fields, runtime, {"memory": "1g", "pids": 512})
    t0 = time.perf_counter()
    sb = Sandbox(config)
    sb.start()
    SandboxEnv._warm_up(sb)  # the first command of a brand-new namespace sandbox can fail on a busy host
    if task.setup.strip():
        sb.exec(["bash", "--norc", "--noprofile", "-e", "-s"], stdin=task.setup, timeout=60)
    sb.create_session("agent")
    elapsed = time.perf_counter() - t0
    return elapsed, sb


def bench_runtime(runtime: str, reps: int) -> dict[str, list[float]]:
    """Measure one runtime; returns the samples of each side."""
    fields = {"image": IMAGE} if runtime == "docker" else None
    env = BashEnv(runtime=runtime, sandbox=fields)
    samples: dict[str, list[float]] = {"after": [], "clean": [], "fresh": [], "floor": []}
    try:
        for task_id in TASKS:  # first resets build the per-task snapshots (not timed)
            env.reset(options={"task_id": task_id})
        for i in range(reps):
            task_id = TASKS[i % len(TASKS)]
            env.step("<bash>echo junk > junk.txt; (sleep 1000 >/dev/null 2>&1 &); echo ok</bash>")
            time.sleep(0.05)
            seconds = timed(lambda t=task_id: env.reset(options={"task_id": t}))  # type: ignore[misc]
            samples["after"].append(seconds)
            samples.setdefault(f"after:{task_id}", []).append(seconds)
            samples["clean"].append(timed(lambda t=task_id: env.reset(options={"task_id": t})))  # type: ignore[misc]
            if runtime != "docker" or i % 3 == 0:
                seconds, sb = fresh_episode(runtime, task_id)
                samples["fresh"].append(seconds)
                sb.stop()
            if runtime == "namespace":
                samples["floor"].append(timed(lambda: subprocess.run(FLOOR_BWRAP, check=True)))
            elif runtime == "docker" and i % 3 == 0:
                floor = ["docker", "run", "--rm", "--network", "none", IMAGE, "true"]
                samples["floor"].append(timed(lambda c=floor: subprocess.run(c, check=True, capture_output=True)))  # type: ignore[misc]
    finally:
        env.close()
    return samples


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--runtimes", default="namespace,docker,local")
    args = parser.parse_args()
    print(f"tool:Bash-v0 reset, {args.reps} resets per side, tasks {TASKS}")
    for runtime in args.runtimes.split(","):
        s = bench_runtime(runtime, args.reps)
        print(f"\n[{runtime}]")
        print(f"  ours, after an episode      {fmt(s['after'])}")
        for task_id in TASKS:
            if s.get("after:" + task_id):  # with --reps below the task count, some tasks get no sample
                print(f"    {task_id:26s}{fmt(s['after:' + task_id])}")
        print(f"  ours, clean                 {fmt(s['clean'])}")
        print(f"  fresh sandbox per episode   {fmt(s['fresh'])}   (n={len(s['fresh'])})")
        if s["floor"]:
            name = "bwrap true" if runtime == "namespace" else "docker run --rm true"
            print(f"  floor: {name:20s} {fmt(s['floor'])}   (n={len(s['floor'])})")
        ratio = statistics.median(s["fresh"]) / statistics.median(s["after"])
        print(f"  fresh-per-episode / ours (after an episode), p50: {ratio:.1f}x")


if __name__ == "__main__":
    main()
