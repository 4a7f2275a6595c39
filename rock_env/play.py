"""``rock-env play ID [--seed N]``: play any registered env in the terminal.

Each line read from stdin is one action. The observation is printed after ``reset`` and
after every step, followed by the info's ``suffix`` (e.g. Sokoban's board) when there is
one, then a status line ``reward=... terminated=... truncated=...``. The command ends
when the episode ends (or with ``--episodes N`` after N episodes) or at end of input.

For ``game:`` ids a bare word such as ``up`` is sent as ``\\boxed{up}`` (GEM's action
format); ``--raw`` sends lines exactly as typed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rock_env.errors import InvalidAction, InvalidArgument


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rock-env play",
        description="Play an env: one action per line on stdin (e.g. 'up' or '\\boxed{up}').",
    )
    parser.add_argument("env_id", help="a registered env id, e.g. game:Sokoban-v0-easy")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play before exiting (default 1)")
    parser.add_argument("--raw", action="store_true", help="send each line as typed (no \\boxed{} wrapping)")
    parser.add_argument("--backend", choices=("local", "remote"), default="local")
    parser.add_argument("--base-url", default=None, help="admin URL for --backend remote")
    return parser


def wrap_action(line: str, env_id: str, raw: bool = False) -> str:
    """The action sent for an input line: a bare word becomes ``\\boxed{word}`` for ``game:`` ids."""
    text = line.rstrip("\r\n")
    word = text.strip()
    if raw or not env_id.startswith("game:") or "\\" in word or not word or len(word.split()) != 1:
        return text
    return f"\\boxed{{{word}}}"


def _show(out: TextIO, obs: Any, info: dict[str, Any]) -> None:
    out.write(f"{obs}\n")
    suffix = info.get("suffix") if isinstance(info, dict) else None
    if suffix:
        out.write(f"{suffix}\n")


def main(argv: Sequence[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the ``play`` command; returns the exit status."""
    args = _parser().parse_args(list(argv))
    if args.episodes < 1:
        raise InvalidArgument(f"--episodes must be at least 1, got {args.episodes}.")
    inp = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    from rock_env.api import make

    kwargs: dict[str, Any] = {"backend": args.backend}
    if args.base_url is not None:
        kwargs["base_url"] = args.base_url
    env = make(args.env_id, **kwargs)
    try:
        _play(env, args, inp, out)
        out.flush()
    except BrokenPipeError:
        # The reader went away (e.g. ``| head``): stop quietly, like other Unix tools.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    finally:
        env.close()
    return 0


def _play(env: Any, args: argparse.Namespace, inp: TextIO, out: TextIO) -> None:
    """The read-step-print loop."""
    obs, info = env.reset(seed=args.seed)
    _show(out, obs, info)
    episodes_left = args.episodes
    episode_return = 0.0
    for line in inp:
        action = wrap_action(line, args.env_id, args.raw)
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except InvalidAction as exc:
            out.write(f"invalid action: {exc}\n")
            out.flush()
            continue
        episode_return += float(reward)
        _show(out, obs, info)
        out.write(f"reward={float(reward)} terminated={bool(terminated)} truncated={bool(truncated)}\n")
        if terminated or truncated:
            out.write(f"episode finished: return={episode_return}\n")
            episodes_left -= 1
            if episodes_left == 0:
                break
            episode_return = 0.0
            obs, info = env.reset()
            _show(out, obs, info)
        out.flush()
