"""The plain-Python replica of numpy's SeedSequence + PCG64 + ``Generator.integers``."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rock_env.games.sokoban import pcg64


def _seeds() -> list[int]:
    rnd = random.Random(3)
    return [0, 1, 2, 2**32 - 1, 2**32, 2**64 + 5, *(rnd.getrandbits(rnd.randrange(1, 1025)) for _ in range(300))]


def test_seed_state_is_numpy_pcg64_state() -> None:
    for seed in _seeds():
        state = np.random.PCG64(seed).state["state"]
        assert pcg64.seed_state(seed) == (state["state"], state["inc"]), seed


def test_integers_match_numpy_generator_integers() -> None:
    rnd = random.Random(5)
    for seed in _seeds()[:120]:
        ours, ref = pcg64.Integers(seed), np.random.default_rng(seed)
        for _ in range(rnd.randrange(1, 60)):
            # small ranges (the Sokoban case) and ranges where Lemire's rejection is likely
            n = rnd.choice((rnd.randrange(1, 100), rnd.randrange(2**31, 2**32 + 1)))
            assert ours.below(n) == int(ref.integers(n)), (seed, n)


def test_self_check_passes_with_the_installed_numpy() -> None:
    assert pcg64.matches_numpy()


def test_seed_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="2\\*\\*1024"):
        pcg64.seed_state(2**1100)
