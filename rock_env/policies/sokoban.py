"""A scripted Sokoban policy built on the optimal solver :func:`rock_env.games.sokoban.solve`.

Use it with ``policy=scripted policy.target=rock_env.policies.sokoban:solve_sokoban`` (the
default of ``conf/policy/scripted.yaml``). It plans once per episode and plays the plan as
``\\boxed{move}`` actions. It reads the level from the env object when it is a local
:class:`~rock_env.games.sokoban.SokobanEnv` (or has GEM's ``room_state``), else from the board
printed in the observation / ``info["suffix"]`` (so it also works on remote envs).
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

_BOARD_LINE = re.compile(r"^[#_OX√P](?: [#_OX√P])+$")


def board_from_text(text: str) -> str | None:
    """The last block of board lines (GEM's symbols separated by spaces) in ``text``, if any."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if _BOARD_LINE.match(line.strip()):
            current.append(line.strip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return "\n".join(blocks[-1]) if blocks else None


def _level(observation: str, env: Any, info: dict[str, Any]) -> Any:
    from rock_env.games.sokoban import SokobanEnv

    inner = getattr(env, "unwrapped", env)
    if isinstance(inner, SokobanEnv):
        return inner
    room = getattr(inner, "room_state", None)
    if room is not None:
        return room
    return board_from_text(f"{observation}\n{info.get('suffix', '')}")


def solve_sokoban(observation: str, env: Any, info: dict[str, Any], max_states: int = 500_000) -> list[str] | str:
    """The solver's plan for the current position, as ``\\boxed{move}`` actions.

    When the level cannot be read or solved (or the search exceeds ``max_states``), it falls
    back to one random action so the episode still goes on.
    """
    from rock_env.games.sokoban import SolverLimitExceeded, solve

    level = _level(observation, env, info)
    moves: list[str] | None = None
    if level is not None:
        try:
            moves = solve(level, max_states=max_states)
        except SolverLimitExceeded:
            logger.info("Sokoban solver gave up after %d states; playing a random move", max_states)
    if not moves:
        return str(env.sample_random_action())
    return [f"\\boxed{{{move}}}" for move in moves]
