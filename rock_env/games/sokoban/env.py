"""The Sokoban env: GEM's ``game:Sokoban-v0-*`` rules, text and rewards, with per-env seeding.

For the same seed, ``reset(seed)`` and every ``step`` return exactly what gem-llm 0.1.0's
``SokobanEnv`` returns (observation, reward, terminated, truncated and info), including the
example action in the instructions and the size the ``random`` variant picks.

Seeding differs from GEM only where GEM is not reproducible:

* GEM seeds the *global* ``random``/``numpy.random`` in ``reset(seed)``; this env draws the
  same values from its own ``self.rng`` instead and never touches global state.
* An unseeded ``reset()`` in GEM generates the room from unseeded generators. Here it draws
  the room seed from the env's own ``np_random``, so an env constructed with ``seed=n`` (or
  reset once with ``seed=n``) gives the same sequence of levels on later ``reset()`` calls.
  The instructions' example action and the ``random`` variant's size keep following the
  same ``random`` stream as GEM's global one would.

Actions are strings; the last ``\\boxed{up|down|left|right}`` (any case) is the move.
An action that is empty or ``None`` (anything falsy) is a format error like in GEM (reward
-0.1, episode over). Inputs on which GEM would crash (a non-string, or a match such as
``\\boxed{rİght}`` that lower-cases to no known move) raise :class:`InvalidAction` without
changing the episode.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import Any

import numpy as np

from rock_env.core import Env, StepResult, text_space
from rock_env.errors import InvalidAction, InvalidArgument
from rock_env.games.sokoban.cache import LevelCache, resolve_cache_dir
from rock_env.games.sokoban.generator import (
    BOX,
    BOX_ON_TARGET,
    FLOOR,
    PLAYER,
    TARGET,
    WALL,
    Room,
    RoomGenerationError,
    generate_room,
)

logger = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = ("up", "down", "left", "right")
_DELTAS: dict[str, tuple[int, int]] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
_ACTION_RE = re.compile(r"\\boxed\{(up|down|left|right)\}", re.IGNORECASE)
_SYMBOLS = {WALL: "#", FLOOR: "_", TARGET: "O", BOX_ON_TARGET: "√", BOX: "X", PLAYER: "P", 6: "S"}

#: GEM's ``random`` variant: (dim_room, num_boxes, max_turns), picked with ``random.choice``.
RANDOM_CANDIDATES: tuple[tuple[tuple[int, int], int, int], ...] = (((6, 6), 2, 20), ((8, 8), 5, 50))

#: GEM's LanguageGameReward values.
SUCCESS_REWARD = 1.0
STEP_REWARD = 0.0
INVALID_ACTION_REWARD = 0.0
FORMAT_ERROR_REWARD = -0.1

#: GEM retries the generation with ``seed + attempt`` this many times.
MAX_GENERATION_ATTEMPTS = 50


def parse_action(action: Any) -> str | None:
    """The move in ``action`` (``"up"``, ...), or ``None`` for GEM's format error.

    Raises:
        InvalidAction: for inputs on which GEM's parser crashes.
    """
    try:
        empty = not action
    except Exception as exc:  # e.g. a numpy array: its truth value is ambiguous
        raise InvalidAction(f"Sokoban actions are strings like '\\boxed{{up}}', got {type(action).__name__}.") from exc
    if empty:
        return None
    if not isinstance(action, str):
        raise InvalidAction(f"Sokoban actions are strings like '\\boxed{{up}}', got {type(action).__name__}.")
    found = _ACTION_RE.findall(action)
    if not found:
        return None
    move = found[-1].lower()
    if move not in _DELTAS:
        raise InvalidAction(
            f"the move {found[-1]!r} is not one of {list(ACTIONS)} once lower-cased; "
            "write it in plain ASCII, e.g. '\\boxed{right}'."
        )
    return move


class SokobanEnv(Env):
    """Push every box onto a target, GEM-compatible (``game:Sokoban-v0-easy|hard|random``).

    Args:
        dim_room: ``(rows, cols)`` of the room; ``None`` picks the ``random`` variant.
        max_turns: turn limit; ``None`` picks the ``random`` variant.
        num_boxes: number of boxes; ``None`` picks the ``random`` variant.
        seed: seed of the first ``reset()``; later unseeded resets continue reproducibly.
        level_cache: keep generated levels on disk and reuse them for repeated seeds: a
            directory, ``True`` for the default one, ``False`` for none; ``None`` (default)
            follows ``$ROCK_ENV_SOKOBAN_CACHE`` (see :mod:`rock_env.games.sokoban.cache`).

    The ``random`` variant (any of the three is ``None``, like GEM) picks a 6x6 room with 2 boxes
    and 20 turns or an 8x8 room with 5 boxes and 50 turns at every reset.
    """

    def __init__(
        self,
        dim_room: tuple[int, int] | list[int] | None = (6, 6),
        max_turns: int | None = 100,
        num_boxes: int | None = 3,
        *,
        seed: int | None = None,
        level_cache: bool | str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(seed=seed)
        cache_dir = resolve_cache_dir(level_cache)
        self.level_cache: LevelCache | None = LevelCache(cache_dir) if cache_dir is not None else None
        self.is_random = dim_room is None or max_turns is None or num_boxes is None
        if not self.is_random:
            assert dim_room is not None and max_turns is not None and num_boxes is not None
            dim_room = _check_dims(dim_room)
            max_turns = _check_positive("max_turns", max_turns)
            num_boxes = _check_positive("num_boxes", num_boxes)
            if num_boxes + 1 >= (dim_room[0] - 2) * (dim_room[1] - 2):
                raise InvalidArgument(
                    f"a {dim_room[0]}x{dim_room[1]} room has no space for {num_boxes} boxes and the player: "
                    "use a bigger dim_room or fewer boxes."
                )
        else:
            dim_room, num_boxes, max_turns = RANDOM_CANDIDATES[0]
        self.dim_room: tuple[int, int] = tuple(dim_room)  # type: ignore[assignment]
        self.max_turns: int = int(max_turns)
        self.num_boxes: int = int(num_boxes)
        self.num_gen_steps = int(1.7 * (self.dim_room[0] + self.dim_room[1]))
        self.action_space = text_space(max_length=4096)
        self.observation_space = text_space(max_length=4096)
        self.turn_count = 0
        self._cols = self.dim_room[1]
        self._fixed: tuple[int, ...] = ()
        self._state: list[int] = []
        self._chars: list[str] = []
        self._player = 0

    # -- episode -------------------------------------------------------------------------

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.is_random:
            self.dim_room, self.num_boxes, self.max_turns = self.rng.choice(RANDOM_CANDIDATES)
            self.num_gen_steps = int(1.7 * (self.dim_room[0] + self.dim_room[1]))
        base = seed if seed is not None else int(self.np_random.integers(0, 2**63 - MAX_GENERATION_ATTEMPTS))  # type: ignore[attr-defined]
        room = None
        for attempt in range(MAX_GENERATION_ATTEMPTS):
            try:
                room = self._generate(base + attempt)
                break
            except RoomGenerationError:
                logger.debug("no room for seed %d, trying %d", base + attempt, base + attempt + 1)
        if room is None:
            raise RoomGenerationError(
                f"failed to generate a valid Sokoban room after {MAX_GENERATION_ATTEMPTS} attempts "
                f"(seeds {base}..{base + MAX_GENERATION_ATTEMPTS - 1})."
            )
        self._cols = room.cols
        self._fixed = room.fixed
        self._state = list(room.state)
        self._player = room.player
        self._chars = _board_chars(room.state, room.cols)
        self.turn_count = 0
        return self._instructions(), {"suffix": self.get_task_suffix()}

    def _generate(self, seed: int) -> Room:
        if self.level_cache is not None:
            return self.level_cache.generate(self.dim_room, self.num_gen_steps, self.num_boxes, seed)
        return generate_room(self.dim_room, self.num_gen_steps, self.num_boxes, seed)

    def close(self) -> None:
        """End the env (and close its level cache's file)."""
        if self.level_cache is not None:
            self.level_cache.close()
        super().close()

    def _step(self, action: str) -> StepResult:
        move = parse_action(action)
        self.turn_count += 1
        turn = self.turn_count
        if move is None:
            obs = f"At turn {turn}, your submitted action is not valid."
            return obs, FORMAT_ERROR_REWARD, True, turn == self.max_turns, {"suffix": self.get_task_suffix()}
        if self._blocked(move):
            obs = f"At turn {turn}, you cannot move {move} - you would collide with wall or other boxes!"
            reward = INVALID_ACTION_REWARD
        else:
            moved, pushed = self._push(move)
            if not moved:
                obs = f"At turn {turn}, invalid move - cannot move to that position."
                reward = INVALID_ACTION_REWARD
            else:
                obs = f"At turn {turn}, you {'pushed a box while you ' if pushed else ''}moved {move}."
                reward = STEP_REWARD
                if self.boxes_on_targets() == self.num_boxes:
                    obs = "Congratulations! You have solved the Sokoban puzzle!"
                    return obs, SUCCESS_REWARD, True, False, {"suffix": self.get_task_suffix()}
        if turn >= self.max_turns:
            reward = SUCCESS_REWARD * (self.boxes_on_targets() / self.num_boxes)
            obs = "You have reached the maximum number of turns."
            return obs, reward, True, True, {"suffix": self.get_task_suffix()}
        return obs, reward, False, False, {"suffix": self.get_task_suffix()}

    def sample_random_action(self) -> str:
        """A random move in GEM's format, e.g. ``\\boxed{left}`` (drawn from ``self.rng``)."""
        return f"\\boxed{{{self.rng.choice(ACTIONS)}}}"

    # -- rules ---------------------------------------------------------------------------

    def _target(self, move: str, steps: int) -> int | None:
        """Flat index ``steps`` cells from the player in ``move``'s direction, None if outside."""
        dr, dc = _DELTAS[move]
        r, c = divmod(self._player, self._cols)
        r += dr * steps
        c += dc * steps
        if r < 0 or r >= self.dim_room[0] or c < 0 or c >= self._cols:
            return None
        return r * self._cols + c

    def _blocked(self, move: str) -> bool:
        """GEM's ``_would_collide_with_wall``."""
        nxt = self._target(move, 1)
        if nxt is None or self._state[nxt] == WALL:
            return True
        if self._state[nxt] in (BOX_ON_TARGET, BOX):
            beyond = self._target(move, 2)
            return beyond is None or self._state[beyond] not in (FLOOR, TARGET)
        return False

    def _push(self, move: str) -> tuple[bool, bool]:
        """GEM's ``_push``: push a box if one is ahead and can move, else try to walk."""
        nxt = self._target(move, 1)
        if nxt is None:
            return False, False
        beyond = self._target(move, 2)
        state = self._state
        if beyond is not None and state[nxt] in (BOX_ON_TARGET, BOX) and state[beyond] in (FLOOR, TARGET):
            self._set(beyond, BOX_ON_TARGET if self._fixed[beyond] == TARGET else BOX)
            self._walk_to(nxt)
            return True, True
        if state[nxt] in (FLOOR, TARGET):
            self._walk_to(nxt)
            return True, False
        return False, False

    def _walk_to(self, cell: int) -> None:
        self._set(self._player, self._fixed[self._player])
        self._set(cell, PLAYER)
        self._player = cell

    def _set(self, cell: int, code: int) -> None:
        """Change one cell of the state and of the rendered board."""
        self._state[cell] = code
        self._chars[2 * cell] = _SYMBOLS[code]

    def boxes_on_targets(self) -> int:
        """How many boxes are on targets now."""
        return self._state.count(BOX_ON_TARGET)

    # -- text ----------------------------------------------------------------------------

    def _instructions(self) -> str:
        return _instructions(self.max_turns, self.sample_random_action())

    def render_board(self) -> str:
        """The board, one row per line, cells separated by spaces (GEM's ``_render_board``)."""
        return "".join(self._chars)

    def get_task_suffix(self) -> str:
        """GEM's suffix: the board and the prompt for the next move."""
        return f"Here is the current board layout:\n{self.render_board()}\nEnter your move."

    # -- GEM-style views -----------------------------------------------------------------

    @property
    def room_state(self) -> np.ndarray | None:
        """The current state as GEM's 2-D ``room_state`` array (a copy); ``None`` before the first reset."""
        if not self._state:
            return None
        return np.array(self._state, dtype=int).reshape(self.dim_room)

    @property
    def room_fixed(self) -> np.ndarray | None:
        """The walls, floors and targets as GEM's 2-D ``room_fixed`` array (a copy); ``None`` before the first reset."""
        if not self._fixed:
            return None
        return np.array(self._fixed, dtype=int).reshape(self.dim_room)

    @property
    def player_position(self) -> np.ndarray | None:
        """``[row, col]`` of the player, like GEM's; ``None`` before the first reset."""
        if not self._state:
            return None
        return np.array(divmod(self._player, self._cols))


def _board_chars(state: tuple[int, ...] | list[int], cols: int) -> list[str]:
    """The rendered board as a list: cell ``i`` is item ``2 * i``, each followed by ' ' or newline."""
    chars = list(_separators(len(state), cols))
    chars[0::2] = [_SYMBOLS[code] for code in state]
    return chars


@functools.lru_cache(maxsize=64)
def _separators(cells: int, cols: int) -> tuple[str, ...]:
    """A board's items with the separators in place and the cells still empty."""
    return tuple(s for i in range(cells) for s in ("", "\n" if (i + 1) % cols == 0 else " "))


@functools.lru_cache(maxsize=256)
def _instructions(max_turns: int, example: str) -> str:
    """GEM's instructions text for a turn limit and an example action such as ``\\boxed{up}``."""
    direction = example.split("{")[1].split("}")[0]
    return (
        "You are solving the Sokoban puzzle. You are the player and you need to push all boxes to targets.\n"
        "When you are right next to a box, you can push it by moving in the same direction.\n"
        "You cannot push a box through a wall or another box, and you cannot pull a box.\n"
        f"you have to complete the puzzle within {max_turns} turns.\n"
        "On the board, objects are represented as:\n"
        "- The player (you) appears as 'P'\n"
        "- Walls are represented with '#'\n"
        "- Boxes are marked as 'X'\n"
        "- Empty goals are shown with 'O'\n"
        "- Boxes on goals are visualized with '√'\n"
        "- Empty floor is shown as '_'\n\n"
        "To submit your move, type the command in \\boxed{}.\n"
        f"For example: {example} to move {direction}.\n"
        "Use logic and deduction to push all boxes onto the target positions!"
    )


def _check_dims(dim_room: Any) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in dim_room)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"dim_room must be two ints (rows, cols), got {dim_room!r}.") from exc
    if rows < 4 or cols < 4:
        raise InvalidArgument(f"dim_room must be at least (4, 4) (a wall border around the floor), got {dim_room!r}.")
    return rows, cols


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"{name} must be a positive int, got {value!r}.")
    return int(value)
