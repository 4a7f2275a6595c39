"""Sokoban room generation that reproduces gem-llm 0.1.0 level for level, much faster.

GEM builds a room in three stages, all driven by two generators seeded with the same
integer: a ``random.Random`` (the random walk that carves the floor) and a
``numpy.random.Generator`` from ``numpy.random.default_rng`` (the player and box cells).

1. *Topology*: a random walk of ``num_steps`` steps stamps 3x3 masks onto a wall grid.
2. *Placement*: the player, then ``num_boxes`` boxes are put on random floor cells; the box
   cells become the targets.
3. *Reverse play*: a depth-first search pulls boxes away from their targets. Every state
   reached first on a path is scored ``pulls * sum(manhattan(box, its target))`` (zero unless
   every target is uncovered) and the first state with the highest score is the level. The
   search visits at most 300,000 states and never goes deeper than 298 moves.

A try is discarded (and the next one drawn from the same generators) when the placement
has too few free cells, when a box starts frozen, when the best score is zero or when the
chosen level has a (GEM-defined) deadlock.

This module follows the same semantics exactly (same draws, same visiting order, same
tie-breaking, same limits) with flat integer grids, bit boards, an incremental
displacement score and an explicit stack instead of numpy arrays copied at every node of a
recursion. The placement draws from a plain-Python replica of numpy's seeding and PCG64
(:mod:`rock_env.games.sokoban.pcg64`, checked against numpy at import; numpy's own
generator is used if that check fails).

The module is a little over 500 lines on purpose: the three stages share the grid encoding,
the bit boards and the draw order, and the exact reproduction of GEM's levels depends on them
staying side by side (a split would scatter one algorithm over several files).
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rock_env.errors import RockEnvError
from rock_env.games.sokoban import pcg64

logger = logging.getLogger(__name__)

#: Bump when a change could produce a different level for the same inputs (cache key).
GENERATOR_VERSION = 1

WALL, FLOOR, TARGET, BOX_ON_TARGET, BOX, PLAYER = 0, 1, 2, 3, 4, 5

#: Walk directions in GEM's order (row, column).
_WALK_DIRECTIONS: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (-1, 0), (0, -1))

#: The five 3x3 stamps of the random walk, as lists of (row, column) offsets of their ones.
_MASKS: tuple[tuple[tuple[int, int], ...], ...] = tuple(
    tuple((i, j) for i in range(3) for j in range(3) if mask[i][j])
    for mask in (
        ((0, 0, 0), (1, 1, 1), (0, 0, 0)),
        ((0, 1, 0), (0, 1, 0), (0, 1, 0)),
        ((0, 0, 0), (1, 1, 0), (0, 1, 0)),
        ((0, 0, 0), (1, 1, 0), (1, 1, 0)),
        ((0, 0, 0), (0, 1, 1), (0, 1, 0)),
    )
)

#: Cell codes a box can move onto / a player can stand on (floor, empty target).
_FREE: tuple[bool, ...] = (False, True, True, False, False, False, False)

#: Neighbour order used by the deadlock checks and the reverse search: up, down, left, right.
_NEIGHBOURS: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))

MAX_EXPLORED_STATES = 300_000
SEARCH_TTL = 300
P_CHANGE_DIRECTIONS = 0.35
TRIES = 1000


class RoomGenerationError(RockEnvError):
    """No valid room could be generated within the allowed number of tries."""


@dataclass(frozen=True)
class Room:
    """A generated level on a ``rows x cols`` grid, cells flattened row by row.

    Attributes:
        rows: number of rows (GEM's ``dim_room[0]``).
        cols: number of columns (GEM's ``dim_room[1]``).
        fixed: the immovable part per cell (GEM's ``room_fixed``): 0 wall, 1 floor, 2 target.
        state: the full start state per cell (GEM's ``room_state``): adds 4 box, 5 player.
        player: flat index of the player.
    """

    rows: int
    cols: int
    fixed: tuple[int, ...]
    state: tuple[int, ...]
    player: int

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(room_fixed, room_state)`` as 2-D integer arrays, like GEM's."""
        shape = (self.rows, self.cols)
        return np.array(self.fixed, dtype=int).reshape(shape), np.array(self.state, dtype=int).reshape(shape)


def _draws_match_choice() -> bool:
    """Whether ``_below`` draws exactly like ``Random.choice``/``Random.randint`` on this Python."""
    for seed in (0, 1, 12345):
        a, b = random.Random(seed), random.Random(seed)
        for n in (2, 4, 5, 7):
            seq = tuple(range(n))
            if [a.choice(seq) for _ in range(50)] != [_below(b.getrandbits, n) for _ in range(50)]:
                return False
            if [a.randint(1, n) for _ in range(50)] != [1 + _below(b.getrandbits, n) for _ in range(50)]:
                return False
    return True


def _below(getrandbits: Callable[[int], int], n: int) -> int:
    """``Random._randbelow(n)`` of CPython: rejection sampling on ``n.bit_length()`` bits."""
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return r


@functools.lru_cache(maxsize=64)
def _mask_bits(cols: int) -> tuple[int, ...]:
    """Every mask as a bit board (bit ``i * cols + j`` for its one at row i, column j)."""
    return tuple(sum(1 << (i * cols + j) for i, j in mask) for mask in _MASKS)


@functools.lru_cache(maxsize=64)
def _inner(rows: int, cols: int) -> tuple[int, tuple[int, ...]]:
    """``(bit board, sorted flat cells)`` of the cells inside the wall border."""
    cells = tuple(r * cols + c for r in range(1, rows - 1) for c in range(1, cols - 1))
    return sum(1 << i for i in cells), cells


def _topology(rnd: random.Random, rows: int, cols: int, num_steps: int, p_change: float) -> int:
    """Carve the floor with GEM's random walk; returns the floor cells as a bit board."""
    # ``Random.choice`` draws exactly like GEM's ``Random.sample(seq, 1)[0]`` for these sizes;
    # the inlined rejection sampling below draws like ``choice`` (checked at import).
    if not _FAST_DRAWS:
        return _topology_reference(rnd, rows, cols, num_steps, p_change)
    getrandbits = rnd.getrandbits
    uniform = rnd.random
    masks = _mask_bits(cols)
    k = getrandbits(3)
    while k >= 4:
        k = getrandbits(3)
    dr, dc = _WALK_DIRECTIONS[k]
    r = 1 + _below(getrandbits, rows - 1)  # randint(1, rows - 1)
    c = 1 + _below(getrandbits, cols - 1)
    hi_r, hi_c = rows - 2, cols - 2
    floor = 0
    for _ in range(num_steps):
        if uniform() < p_change:
            k = getrandbits(3)
            while k >= 4:
                k = getrandbits(3)
            dr, dc = _WALK_DIRECTIONS[k]
        r += dr
        if r > hi_r:
            r = hi_r
        elif r < 1:
            r = 1
        c += dc
        if c > hi_c:
            c = hi_c
        elif c < 1:
            c = 1
        k = getrandbits(3)
        while k >= 5:
            k = getrandbits(3)
        floor |= masks[k] << ((r - 1) * cols + c - 1)
    return floor & _inner(rows, cols)[0]


def _topology_reference(rnd: random.Random, rows: int, cols: int, num_steps: int, p_change: float) -> int:
    """The same walk with the public ``Random`` API (used if ``_below`` does not match)."""
    direction = rnd.choice(_WALK_DIRECTIONS)
    r = rnd.randint(1, rows - 1)
    c = rnd.randint(1, cols - 1)
    floor = 0
    for _ in range(num_steps):
        if rnd.random() < p_change:
            direction = rnd.choice(_WALK_DIRECTIONS)
        r = max(min(r + direction[0], rows - 2), 1)
        c = max(min(c + direction[1], cols - 2), 1)
        base = (r - 1) * cols + (c - 1)
        for i, j in rnd.choice(_MASKS):
            floor |= 1 << (base + i * cols + j)
    return floor & _inner(rows, cols)[0]


def _floor_cells(floor: int, rows: int, cols: int) -> list[int]:
    """The cells of a floor bit board, in increasing order."""
    return [i for i in _inner(rows, cols)[1] if floor >> i & 1]


_FAST_DRAWS = _draws_match_choice()


class _NumpyDraws:
    """``below(n)`` = ``numpy.random.default_rng(seed).integers(n)``, one call per draw."""

    def __init__(self, seed: int) -> None:
        self._gen = np.random.default_rng(seed)

    def below(self, n: int) -> int:
        return int(self._gen.integers(n))


def _pure_python_draws_ok() -> bool:
    """Whether :mod:`pcg64` draws like this numpy (else numpy's own, slower, calls are used)."""
    try:
        ok = pcg64.matches_numpy()
    except Exception:  # e.g. a numpy whose API moved
        ok = False
    if not ok:
        logger.warning("the pure-Python PCG64 replica differs from this numpy; using numpy's generator")
    return ok


_Draws: type[_NumpyDraws] | type[pcg64.Integers] = pcg64.Integers if _pure_python_draws_ok() else _NumpyDraws


def _place(free: list[int], num_boxes: int, draws: _NumpyDraws | pcg64.Integers) -> tuple[int, list[int]]:
    """Pick the player cell and the box (= target) cells from the sorted ``free`` cells like GEM.

    Returns ``(player, sorted boxes)``; ``free`` (more than ``num_boxes + 1`` cells) is consumed.
    """
    below = draws.below
    player = free.pop(below(len(free)))
    # GEM's deadlock test for a new box always passes (the cell is a target by then), so every
    # draw places a box; ``free`` stays sorted, like ``np.where(room == 1)``.
    boxes = [free.pop(below(len(free))) for _ in range(num_boxes)]
    boxes.sort()
    return player, boxes


def _frozen_at_start(floor: int, boxes: list[int], player: int, cols: int) -> bool:
    """:func:`_is_frozen` for the start position (floor bit board, boxes on their targets)."""
    if len(boxes) < 2:
        return False
    box_bits = 0
    for b in boxes:
        box_bits |= 1 << b
    behind_ok = floor & ~box_bits  # a free cell, or the player's own
    ahead_ok = behind_ok & ~(1 << player)  # a free cell
    for b in boxes:
        for d in (-cols, cols, -1, 1):
            if ahead_ok >> (b + d) & 1 and behind_ok >> (b - d) & 1:
                break
        else:
            return True
    return False


def _is_simple_deadlock(fixed: bytearray, rows: int, cols: int, cell: int) -> bool:
    """GEM's ``is_deadlock_position`` (including which wall pairs it counts as a corner)."""
    if fixed[cell] == TARGET:
        return False
    r, c = divmod(cell, cols)
    walls: list[int] = []
    for k, (dr, dc) in enumerate(_NEIGHBOURS):
        nr, nc = r + dr, c + dc
        if nr < 0 or nr >= rows or nc < 0 or nc >= cols or fixed[nr * cols + nc] == WALL:
            walls.append(k)
    if len(walls) > 2:
        return True
    return len(walls) == 2 and abs(walls[0] - walls[1]) in (1, 3)


def _is_frozen(state: list[int], rows: int, cols: int, boxes: list[int], player: int) -> bool:
    """GEM's ``detect_frozen_deadlocks``: some box has no direction to be pushed in.

    GEM asks whether the pushing cell is free or "reachable"; its reachability search only
    ever succeeds on the player's own cell, which is what is tested here.
    """
    if len(boxes) < 2:
        return False
    for cell in boxes:
        r, c = divmod(cell, cols)
        if 0 < r < rows - 1 and 0 < c < cols - 1:
            # Inside the border (always the case for boxes): neighbours are cell -/+ d.
            for d in (-cols, cols, -1, 1):
                if _FREE[state[cell + d]] and (_FREE[state[cell - d]] or cell - d == player):
                    break
            else:
                return True
            continue
        movable = False
        for dr, dc in _NEIGHBOURS:
            nr, nc, pr, pc = r + dr, c + dc, r - dr, c - dc
            if not (0 <= nr < rows and 0 <= nc < cols and 0 <= pr < rows and 0 <= pc < cols):
                continue
            if state[nr * cols + nc] in (FLOOR, TARGET):
                push = pr * cols + pc
                if state[push] in (FLOOR, TARGET) or push == player:
                    movable = True
                    break
        if not movable:
            return True
    return False


def reverse_search(
    fixed: bytearray,
    cols: int,
    targets: list[int],
    player: int,
    *,
    max_states: int = MAX_EXPLORED_STATES,
    ttl: int = SEARCH_TTL,
) -> tuple[int, int, int, int]:
    """GEM's reverse play from boxes on ``targets`` and the player on ``player``.

    Returns ``(score, player, boxes_bitboard, explored_states)`` of the first best state in
    GEM's depth-first order (up, down, left, right), with the same state identity (player,
    box cells, and which boxes were pulled at least once), the same depth limit and cap.

    GEM recurses; this is the same depth-first walk with an explicit stack (deep Python
    recursion makes CPython map and unmap a 16 KiB frame chunk every time the depth crosses
    a chunk boundary, thousands of times per hard level). ``isbox`` and ``owner`` are mutated
    on pulls and restored on the way back; ``boxes``/``moved`` bit boards name the state in
    ``seen`` (box cells and pulled boxes -> player cells seen in that state).
    """
    ncells = len(fixed)
    isbox = bytearray(ncells)
    tmask = 0
    is_target = bytearray(ncells)
    for t in targets:
        tmask |= 1 << t
        is_target[t] = 1
        isbox[t] = 1
    if ttl - 1 <= 0 or max_states <= 0:
        return 0, player, tmask, 0
    if max_states <= 1 or ttl - 2 <= 0:
        return 0, player, tmask, 1
    moves = _moves(fixed, cols)
    bits = _bits(ncells)
    table = _manhattan(ncells // cols, cols)
    dist = [table[t] for t in targets]
    owner = [0] * ncells
    for k, t in enumerate(targets):
        owner[t] = k
    shift = ncells
    root = bytearray(ncells)
    root[player] = 1
    seen: dict[int, bytearray] = {tmask: root}
    best_score = 0
    best_player = player
    best_boxes = tmask
    count = 1
    stack: list[tuple[Any, ...]] = []
    push = stack.append
    pop = stack.pop
    p, boxes, moved, vis, sc, pulls, disp = player, tmask, 0, root, 0, 0, 0
    rem = ttl - 3  # the depth budget of the current node's children
    it = iter(moves[p])
    while True:
        for n, b in it:
            if isbox[n]:
                continue
            if isbox[b]:  # a pull: the box at b follows the player from p to n
                bb = bits[b]
                pb = bits[p]
                nboxes = (boxes ^ bb) | pb
                nmoved = (moved & ~bb) | pb
                key = nboxes | (nmoved << shift)
                v2 = seen.get(key)
                if v2 is None:
                    v2 = bytearray(ncells)
                    seen[key] = v2
                elif v2[n]:
                    continue
                v2[n] = 1
                k = owner[b]
                dk = dist[k]
                ndisp = disp + dk[p] - dk[b]
                nsc = (pulls + 1) * ndisp if not nboxes & tmask else 0
            elif not vis[n]:  # a walk in the same box configuration
                vis[n] = 1
                nboxes, nsc, v2 = boxes, sc, None
            else:
                continue
            # Visit n: GEM scores every state on entry, counts it, and expands it if depth is left.
            if nsc > best_score and not is_target[n]:
                best_score = nsc
                best_player = n
                best_boxes = nboxes
            count += 1
            if count >= max_states:
                return best_score, best_player, best_boxes, count
            if rem <= 0:
                continue
            if v2 is None:
                push((p, rem, it))
                p = n
            else:
                owner[p] = k
                isbox[b] = 0
                isbox[p] = 1
                push((p, boxes, moved, vis, sc, pulls, disp, rem, it, b, k))
                p, boxes, moved, vis, sc, pulls, disp = n, nboxes, nmoved, v2, nsc, pulls + 1, ndisp
            rem -= 1
            it = iter(moves[n])
            break
        else:
            if not stack:
                return best_score, best_player, best_boxes, count
            frame = pop()
            if len(frame) == 3:
                p, rem, it = frame
            else:
                p, boxes, moved, vis, sc, pulls, disp, rem, it, b, k = frame
                isbox[p] = 0
                isbox[b] = 1
                owner[b] = k


@functools.lru_cache(maxsize=64)
def _bits(cells: int) -> tuple[int, ...]:
    """``_bits(n)[i] == 1 << i`` for every cell of an ``n``-cell room."""
    return tuple(1 << i for i in range(cells))


@functools.lru_cache(maxsize=64)
def _neighbour_pairs(rows: int, cols: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per inner cell: ``(next, behind)`` for up, down, left, right (empty for border cells)."""
    out: list[tuple[tuple[int, int], ...]] = [()] * (rows * cols)
    for r in range(1, rows - 1):
        for c in range(1, cols - 1):
            p = r * cols + c
            out[p] = tuple((p + d, p - d) for d in (-cols, cols, -1, 1))
    return tuple(out)


def _moves(fixed: bytearray, cols: int) -> list[tuple[tuple[int, int], ...]]:
    """Per floor cell: the ``(next, behind)`` pairs of :func:`_neighbour_pairs` whose next cell is not a wall."""
    pairs = _neighbour_pairs(len(fixed) // cols, cols)
    return [tuple(nb for nb in pairs[p] if fixed[nb[0]]) if fixed[p] else () for p in range(len(fixed))]


@functools.lru_cache(maxsize=32)
def _manhattan(rows: int, cols: int) -> tuple[tuple[int, ...], ...]:
    """``table[a][b]``: Manhattan distance between flat cells ``a`` and ``b``."""
    cells = [divmod(i, cols) for i in range(rows * cols)]
    return tuple(tuple(abs(r - r2) + abs(c - c2) for r2, c2 in cells) for r, c in cells)


def _one_try(
    rnd: random.Random,
    draws: _NumpyDraws | pcg64.Integers,
    rows: int,
    cols: int,
    num_steps: int,
    num_boxes: int,
    p_change: float,
    stats: dict[str, int] | None,
) -> Room | None:
    """One of GEM's tries: the room, or None when GEM would discard it and try again."""
    floor = _topology(rnd, rows, cols, num_steps, p_change)
    free = _floor_cells(floor, rows, cols)
    if len(free) <= num_boxes + 1:
        return None
    player, targets = _place(free, num_boxes, draws)
    # Boxes start on their targets, so only a frozen cluster can be a deadlock here.
    if _frozen_at_start(floor, targets, player, cols):
        return None
    fixed = bytearray(rows * cols)
    for i in free:  # the floor cells that the placement left free
        fixed[i] = FLOOR
    fixed[player] = FLOOR
    for t in targets:
        fixed[t] = TARGET
    score, p, boxes, explored = reverse_search(fixed, cols, targets, player)
    if stats is not None:
        stats["explored_states"] = stats.get("explored_states", 0) + explored
    if score <= 0:
        return None
    state = list(fixed)
    box_cells = [i for i in range(rows * cols) if (boxes >> i) & 1]
    for i in box_cells:
        state[i] = BOX
    state[p] = PLAYER
    for i in box_cells:
        if _is_simple_deadlock(fixed, rows, cols, i):
            return None
    if _is_frozen(state, rows, cols, box_cells, p):
        return None
    return Room(rows=rows, cols=cols, fixed=tuple(fixed), state=tuple(state), player=p)


def generate_room(
    dim: tuple[int, int],
    num_steps: int,
    num_boxes: int,
    seed: int,
    *,
    p_change_directions: float = P_CHANGE_DIRECTIONS,
    tries: int = TRIES,
    stats: dict[str, int] | None = None,
) -> Room:
    """The room GEM's ``generate_room(dim, p, num_steps, num_boxes, tries, seed=seed)`` makes.

    If ``stats`` is a dict, it receives ``tries`` (tries used) and ``explored_states`` (states
    the reverse searches visited, summed over tries: GEM's cost is about proportional to it).

    Raises:
        RoomGenerationError: no try out of ``tries`` gave a valid room (GEM's RuntimeWarning).
    """
    rows, cols = int(dim[0]), int(dim[1])
    rnd = random.Random(seed)
    # (numpy itself for seeds beyond what the replica supports)
    draws = _Draws(seed) if seed.bit_length() <= pcg64.MAX_SEED_BITS else _NumpyDraws(seed)
    for attempt in range(tries):
        if stats is not None:
            stats["tries"] = attempt + 1
        room = _one_try(rnd, draws, rows, cols, num_steps, num_boxes, p_change_directions, stats)
        if room is not None:
            return room
    raise RoomGenerationError(
        f"could not generate a {rows}x{cols} Sokoban room with {num_boxes} boxes in {tries} tries "
        f"(seed {seed}); use a larger room or fewer boxes."
    )
