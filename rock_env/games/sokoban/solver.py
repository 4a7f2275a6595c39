"""An exact Sokoban solver: breadth-first search over (player, boxes), optimal in moves.

Every move (a walk or a push) costs one turn in the env, so the shortest solution in moves
tells whether a level can be solved within its turn limit. Boxes on *dead squares* (cells
from which a box can never be pushed to any target, even with no other box around) are
pruned; that never removes a solution, so the result stays optimal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from rock_env.errors import InvalidArgument, RockEnvError
from rock_env.games.sokoban.generator import BOX, BOX_ON_TARGET, FLOOR, PLAYER, TARGET, WALL, Room

MOVES: tuple[str, ...] = ("up", "down", "left", "right")

_CHAR_CODES = {"#": WALL, "_": FLOOR, "O": TARGET, "√": BOX_ON_TARGET, "X": BOX, "P": PLAYER, " ": None}


class SolverLimitExceeded(RockEnvError):
    """The search visited more states than ``max_states`` without finding a solution."""


def solve(level: Any, *, max_states: int = 5_000_000) -> list[str] | None:
    """Shortest move sequence (``["up", "left", ...]``) that solves ``level``, or ``None``.

    Args:
        level: a :class:`~rock_env.games.sokoban.env.SokobanEnv` (its current position), a
            :class:`~rock_env.games.sokoban.generator.Room`, a rendered board (GEM's symbols,
            e.g. ``env.render_board()``) or a 2-D grid of GEM's cell codes (``room_state``).
        max_states: stop with :class:`SolverLimitExceeded` after visiting this many states.

    Returns:
        The moves of a solution with the fewest moves (walks and pushes both count), ``[]`` if
        it is solved already, or ``None`` if no sequence of moves solves it.
    """
    rows, cols, fixed, state = _read_level(level)
    return _bfs(rows, cols, fixed, state, max_states)


def _read_level(level: Any) -> tuple[int, int, list[int], list[int]]:
    """``(rows, cols, fixed, state)`` with flat cell lists in GEM's codes."""
    from rock_env.games.sokoban.env import SokobanEnv

    if isinstance(level, SokobanEnv):
        if not level._state:
            raise InvalidArgument("the Sokoban env has no level yet: call reset() before solve(env).")
        return level.dim_room[0], level._cols, list(level._fixed), list(level._state)
    if isinstance(level, Room):
        return level.rows, level.cols, list(level.fixed), list(level.state)
    if isinstance(level, str):
        grid: list[list[int]] = []
        for line in level.strip("\n").splitlines():
            cells = line.split() if " " in line.strip() else list(line.strip())
            if not cells:
                continue
            row: list[int] = []
            for ch in cells:
                code = _CHAR_CODES.get(ch)
                if code is None:
                    raise InvalidArgument(f"unknown board symbol {ch!r}: use # _ O √ X P (GEM's symbols).")
                row.append(code)
            grid.append(row)
        return _from_grid(grid, infer_target_under_player=True)
    if isinstance(level, Sequence) or hasattr(level, "tolist"):
        grid = level.tolist() if hasattr(level, "tolist") else [list(r) for r in level]
        return _from_grid(grid, infer_target_under_player=True)
    raise InvalidArgument(
        f"solve() takes a SokobanEnv, a Room, a board string or a grid of cell codes, got {type(level).__name__}."
    )


def _from_grid(grid: list[list[int]], *, infer_target_under_player: bool) -> tuple[int, int, list[int], list[int]]:
    if not grid or any(len(r) != len(grid[0]) for r in grid):
        raise InvalidArgument("a Sokoban board must be a non-empty rectangle of cells.")
    rows, cols = len(grid), len(grid[0])
    state = [int(v) for r in grid for v in r]
    if any(v not in (WALL, FLOOR, TARGET, BOX_ON_TARGET, BOX, PLAYER) for v in state):
        raise InvalidArgument("cell codes must be 0 wall, 1 floor, 2 target, 3 box on target, 4 box, 5 player.")
    if state.count(PLAYER) != 1:
        raise InvalidArgument(f"a Sokoban board needs exactly one player, found {state.count(PLAYER)}.")
    fixed = [TARGET if v in (TARGET, BOX_ON_TARGET) else WALL if v == WALL else FLOOR for v in state]
    boxes = state.count(BOX) + state.count(BOX_ON_TARGET)
    targets = fixed.count(TARGET)
    if infer_target_under_player and targets == boxes - 1:
        # GEM draws a player standing on a target as 'P': the hidden target is under the player.
        fixed[state.index(PLAYER)] = TARGET
        targets += 1
    if targets != boxes:
        raise InvalidArgument(f"the board has {boxes} boxes but {targets} targets.")
    return rows, cols, fixed, state


def _live_cells(rows: int, cols: int, fixed: list[int]) -> bytearray:
    """Cells from which a lone box can be pushed onto some target."""
    n = rows * cols
    live = bytearray(n)
    queue = deque(i for i in range(n) if fixed[i] == TARGET)
    for i in queue:
        live[i] = 1

    def floor(r: int, c: int) -> bool:
        return 0 <= r < rows and 0 <= c < cols and fixed[r * cols + c] != WALL

    while queue:
        y = queue.popleft()
        yr, yc = divmod(y, cols)
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            # The box came from x = y - d, pushed by a player standing on x - d.
            xr, xc = yr - dr, yc - dc
            if floor(xr, xc) and floor(xr - dr, xc - dc) and not live[xr * cols + xc]:
                live[xr * cols + xc] = 1
                queue.append(xr * cols + xc)
    return live


def _bfs(rows: int, cols: int, fixed: list[int], state: list[int], max_states: int) -> list[str] | None:
    n = rows * cols
    walls = 0
    tmask = 0
    boxes = 0
    for i in range(n):
        if fixed[i] == WALL:
            walls |= 1 << i
        elif fixed[i] == TARGET:
            tmask |= 1 << i
        if state[i] in (BOX, BOX_ON_TARGET):
            boxes |= 1 << i
    player = state.index(PLAYER)
    if boxes == tmask:
        return []
    live = _live_cells(rows, cols, fixed)
    dead = 0
    for i in range(n):
        if not live[i]:
            dead |= 1 << i
    # Moves in GEM's order; a step off the grid is impossible since the border is wall, but
    # guard against open borders all the same.
    deltas = (-cols, cols, -1, 1)

    def inside(p: int, k: int) -> bool:
        if k < 2:
            return 0 <= p + deltas[k] < n
        return (p % cols) + (1 if k == 3 else -1) in range(cols)

    shift = n.bit_length()
    start = (boxes << shift) | player
    parent: dict[int, tuple[int, int]] = {start: (-1, -1)}
    frontier = [start]
    pmask = (1 << shift) - 1
    while frontier:
        nxt: list[int] = []
        for key in frontier:
            p = key & pmask
            bx = key >> shift
            for k in range(4):
                if not inside(p, k):
                    continue
                q = p + deltas[k]
                if (walls >> q) & 1:
                    continue
                nb = bx
                if (bx >> q) & 1:
                    if not inside(q, k):
                        continue
                    r = q + deltas[k]
                    if ((walls | bx) >> r) & 1 or (dead >> r) & 1:
                        continue
                    nb = (bx ^ (1 << q)) | (1 << r)
                child = (nb << shift) | q
                if child in parent:
                    continue
                parent[child] = (key, k)
                if nb == tmask:
                    return _path(parent, child)
                nxt.append(child)
            if len(parent) > max_states:
                raise SolverLimitExceeded(
                    f"no solution found within {max_states} states; pass a larger max_states to search further."
                )
        frontier = nxt
    return None


def _path(parent: dict[int, tuple[int, int]], key: int) -> list[str]:
    moves: list[str] = []
    while True:
        prev, k = parent[key]
        if prev == -1:
            break
        moves.append(MOVES[k])
        key = prev
    moves.reverse()
    return moves
