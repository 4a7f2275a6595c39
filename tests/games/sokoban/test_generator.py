"""The level generator: GEM's reverse search semantics (state cap included), stats, errors."""

from __future__ import annotations

import random
import sys
from typing import Any

import numpy as np
import pytest

from rock_env.games.sokoban import RoomGenerationError, generate_room, pcg64
from rock_env.games.sokoban.generator import (
    BOX,
    FLOOR,
    PLAYER,
    TARGET,
    _Draws,
    _floor_cells,
    _frozen_at_start,
    _is_frozen,
    _NumpyDraws,
    _place,
    _topology,
    reverse_search,
)


def _start_position(dim: tuple[int, int], boxes: int, seed: int) -> tuple[bytearray, list[int], int] | None:
    """A topology and placement drawn like GEM's first try (None if placement fails)."""
    floor = _topology(random.Random(seed), dim[0], dim[1], int(1.7 * sum(dim)), 0.35)
    free = _floor_cells(floor, dim[0], dim[1])
    if len(free) <= boxes + 1:
        return None
    fixed = bytearray(dim[0] * dim[1])
    for i in free:
        fixed[i] = FLOOR
    player, targets = _place(free, boxes, _NumpyDraws(seed))
    for t in targets:
        fixed[t] = TARGET
    return fixed, targets, player


def _gem_reverse_playing(fixed: bytearray, targets: list[int], player: int, dim: tuple[int, int], cap: int) -> Any:
    """Run GEM's own reverse_playing with its 300,000-state cap lowered to ``cap``.

    GEM builds its explored-state set with the name ``set`` looked up in its module, so a set
    whose ``len`` is offset makes the hard-coded cap fire after ``cap`` states.
    """
    import gem.envs.game_env.sokoban.utils as gem_utils

    offset = 300_000 - cap

    class OffsetSet(set):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return super().__len__() + offset

    structure = np.array(fixed, dtype=int).reshape(dim)
    state = structure.copy()
    state[state == TARGET] = BOX
    state.flat[player] = PLAYER
    gem_utils.set = OffsetSet  # type: ignore[attr-defined]
    try:
        best_room, score, _ = gem_utils.reverse_playing(state, structure)
    finally:
        del gem_utils.set
    return best_room, score


@pytest.mark.parametrize("cap", [1, 7, 60, 400, 3000])
def test_reverse_search_matches_gem_with_any_state_cap(cap: int) -> None:
    checked = 0
    for dim, boxes in (((6, 6), 2), ((7, 7), 3), ((8, 8), 4)):
        for seed in range(12):
            start = _start_position(dim, boxes, seed)
            if start is None:
                continue
            fixed, targets, player = start
            gem_room, gem_score = _gem_reverse_playing(fixed, targets, player, dim, cap)
            score, p, box_bits, explored = reverse_search(fixed, dim[1], targets, player, max_states=cap)
            assert explored <= cap
            assert score == gem_score, (dim, seed, cap)
            flat = gem_room.reshape(-1)
            assert p == int(np.flatnonzero(flat == PLAYER)[0])
            assert box_bits == sum(1 << int(i) for i in np.flatnonzero((flat == 3) | (flat == BOX)))
            checked += 1
    assert checked >= 20


def test_stats_report_tries_and_explored_states() -> None:
    stats: dict[str, int] = {}
    room = generate_room((8, 8), 27, 4, 6, stats=stats)
    assert stats["tries"] >= 1 and stats["explored_states"] > 0
    fixed, state = room.to_numpy()
    assert fixed.shape == state.shape == (8, 8)
    assert int((state == BOX).sum()) == int((fixed == TARGET).sum()) == 4
    assert int((state == PLAYER).sum()) == 1 and state.reshape(-1)[room.player] == PLAYER


def test_generation_error_when_no_room_fits() -> None:
    with pytest.raises(RoomGenerationError, match="tries"):
        generate_room((4, 4), 5, 3, seed=0, tries=20)


def test_generation_works_from_a_deep_call_stack() -> None:
    """GEM's search recurses up to 300 levels; ours must not need (or change) the recursion limit."""
    expected = generate_room((8, 8), 27, 4, 2)
    limit = sys.getrecursionlimit()

    def deep(n: int) -> object:
        return generate_room((8, 8), 27, 4, 2) if n == 0 else deep(n - 1)

    assert deep(limit - 60) == expected
    assert sys.getrecursionlimit() == limit


def test_placement_draws_match_numpy_generator_integers() -> None:
    assert _Draws is pcg64.Integers  # the fast path is active with the installed numpy
    rnd = random.Random(99)
    for seed in [*range(300), 2**40 + 3, 123456789]:
        ours, gen = pcg64.Integers(seed), np.random.default_rng(seed)
        for _ in range(rnd.randrange(1, 80)):
            n = rnd.randrange(1, 100)
            assert ours.below(n) == int(gen.integers(n)), (seed, n)


def test_start_frozen_check_agrees_with_the_general_one() -> None:
    checked = frozen = 0
    for seed in range(400):
        dim, boxes = ((6, 6), 2) if seed % 2 else ((8, 8), 4)
        rnd, draws = random.Random(seed), _NumpyDraws(seed)
        for _ in range(5):
            floor = _topology(rnd, dim[0], dim[1], int(1.7 * sum(dim)), 0.35)
            free = _floor_cells(floor, dim[0], dim[1])
            if len(free) <= boxes + 1:
                continue
            level = [1 if floor >> i & 1 else 0 for i in range(dim[0] * dim[1])]
            player, targets = _place(free, boxes, draws)
            state = list(level)
            for t in targets:
                state[t] = BOX
            state[player] = PLAYER
            expected = _is_frozen(state, dim[0], dim[1], targets, player)
            assert _frozen_at_start(floor, targets, player, dim[1]) == expected, (seed, dim)
            checked += 1
            frozen += expected
    assert checked > 1000 and 0 < frozen < checked  # both outcomes are exercised


def test_floor_cells_are_the_inner_set_bits_in_order() -> None:
    floor = (1 << 7) | (1 << 14) | (1 << 28) | (1 << 0) | (1 << 35)  # 0 and 35 are border cells
    assert _floor_cells(floor, 6, 6) == [7, 14, 28]
