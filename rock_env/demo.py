"""The demo job behind ``make demo``: one tour of rock-env on the embedded default.

It starts the embedded server (``rock-env admin start workers=0``: admin + in-process worker on
127.0.0.1, state in a temporary data dir; everything in one process, the setup to start from),
then:

1. plays ``game:Sokoban-v0-easy`` in-process with the optimal solver,
2. replays the same seed and actions through the server (``backend="remote"``) and checks
   that the transcript is identical,
3. runs a rollout of the scripted policy through the server (Hydra config, JSONL output),
4. runs commands in a namespace sandbox placed by the server (persistent session, files,
   snapshot/restore),
5. plays one step of ``tool:Bash-v0`` (a task in a sandbox, graded by its verifier),

and stops the server. ``python -m rock_env.demo [--keep DIR]``; exit status 0 when every
part worked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rock_env as rock


def _say(text: str) -> None:
    print(text, flush=True)


def _transcript(env: Any, seed: int, actions: Sequence[str]) -> list[Any]:
    out: list[Any] = [env.reset(seed=seed)]
    for action in actions:
        step = env.step(action)
        out.append(step)
        if step[2] or step[3]:
            break
    return out


def play_local_and_remote(base_url: str) -> None:
    """Parts 1 and 2: local solver episode, then the same episode through the server."""
    from rock_env.games.sokoban import solve

    local = rock.make("game:Sokoban-v0-easy")
    local.reset(seed=7)
    plan = solve(local) or []
    actions = [f"\\boxed{{{move}}}" for move in plan]
    local_transcript = _transcript(local, 7, actions)
    final = local_transcript[-1]
    _say(f"[1] local Sokoban, seed 7: solver plan of {len(plan)} moves -> reward {final[1]}, solved={final[2]}")
    _say("    " + final[4].get("suffix", final[0]).replace("\n", "\n    ")[:400])
    remote = rock.make("game:Sokoban-v0-easy", backend="remote", base_url=base_url)
    try:
        start = time.perf_counter()
        remote_transcript = _transcript(remote, 7, actions)
        elapsed = time.perf_counter() - start
    finally:
        remote.close()
        local.close()
    if remote_transcript != local_transcript:
        raise SystemExit("remote transcript differs from the local one")
    _say(
        f"[2] remote Sokoban through {base_url}: identical transcript, {len(actions)} steps in {elapsed * 1000:.1f} ms"
    )


def rollout_through_server(base_url: str, out_dir: Path) -> None:
    """Part 3: a Hydra-configured rollout of the solver policy on the remote backend."""
    from rock_env.config import compose_config
    from rock_env.rollout import run_rollout

    cfg = compose_config(
        [
            "env=sokoban_easy",
            "policy=scripted",
            "episodes=20",
            "seed=0",
            "num_envs=4",
            "backend=remote",
            f"backend.base_url={base_url}",
            "progress=false",
        ]
    )
    result = run_rollout(cfg, out_dir)
    summary = result.summary(result_config(cfg))
    _say(
        f"[3] rollout (scripted solver, remote): {summary['episodes']} episodes, success rate "
        f"{summary['success_rate']:.2f}, mean length {summary['mean_length']:.1f}, files in {out_dir}"
    )


def result_config(cfg: Any) -> Any:
    """The validated rollout config (what ``RolloutResult.summary`` takes)."""
    from rock_env.config.schema import validate_rollout_config

    return validate_rollout_config(cfg)


def sandbox_through_server(base_url: str) -> None:
    """Part 4: a namespace sandbox placed by the server."""
    with rock.Sandbox(rock.SandboxConfig(runtime="namespace", memory="256m", pids=128), base_url=base_url) as sb:
        sb.run("cd /tmp && export GREETING=hello")
        persisted = sb.run("echo $GREETING from $(pwd)").output.strip()
        sb.write_file("notes.txt", "first version\n")
        snap = sb.snapshot()
        sb.write_file("notes.txt", "overwritten\n")
        sb.restore(snap)
        restored = sb.read_file("notes.txt").strip()
        isolated = sb.run("cat /root/.bash_history 2>&1 | head -1; id -u").output.strip().splitlines()[-1]
    _say(f"[4] namespace sandbox via server: session kept '{persisted}', restore gave '{restored}', uid {isolated}")


def bash_task_episode() -> None:
    """Part 5: one step of the bash tool env (a task graded by its verifier)."""
    env = rock.make("tool:Bash-v0", runtime="namespace")
    try:
        obs, _info = env.reset(seed=0)
        first_line = obs.strip().splitlines()[0] if obs.strip() else ""
        step = env.step("<bash>ls -la</bash>")
        _say(f"[5] tool:Bash-v0 task: {first_line[:100]!r}; after `ls -la`: reward {step[1]}, done={step[2]}")
    finally:
        env.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 when every part worked."""
    from rock_env.server.testing import ServerProcess

    parser = argparse.ArgumentParser(prog="python -m rock_env.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the rollout output here instead of a temp dir")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rock-env-demo-") as tmp:
        admin = ServerProcess.admin(Path(tmp) / "admin")
        (Path(tmp) / "admin").mkdir()
        _say("[0] starting the embedded server (rock-env admin start workers=0: the admin with its own worker) ...")
        admin.start()
        try:
            _say(f"    serving at {admin.url}")
            play_local_and_remote(admin.url)
            rollout_through_server(admin.url, args.keep or Path(tmp) / "rollout")
            sandbox_through_server(admin.url)
            bash_task_episode()
        finally:
            admin.stop()
    _say("demo finished: every part worked.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
