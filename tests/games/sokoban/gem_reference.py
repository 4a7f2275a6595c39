"""Helpers to run gem-llm 0.1.0's Sokoban live next to ours (the reference is never a fixture)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: GEM's registered kwargs per variant (``game:Sokoban-v0-*``); ``None`` means the random variant.
VARIANTS: dict[str, dict[str, Any]] = {
    "easy": {"dim_room": (6, 6), "num_boxes": 2, "max_turns": 20},
    "hard": {"dim_room": (8, 8), "num_boxes": 4, "max_turns": 50},
    "random": {"dim_room": None, "num_boxes": None, "max_turns": None},
}


def gem_sokoban(variant: str) -> Any:
    """GEM's ``SokobanEnv`` configured like ``gem.make("game:Sokoban-v0-<variant>")``.

    GEM's constructor runs an unseeded ``reset()``; for ``hard``/``random`` that can take
    seconds, so the env is built with the cheap easy settings and then given the variant's
    attributes (exactly the ones GEM's ``__init__`` sets from its arguments).
    """
    from gem.envs.game_env.sokoban import SokobanEnv as GemSokoban

    with preserved_global_rng():
        env = GemSokoban(dim_room=(6, 6), num_boxes=2, max_turns=20)
    kw = VARIANTS[variant]
    if variant == "random":
        env.num_boxes = None
        env.max_turns = None
        env._is_random = True
    else:
        env.dim_room = kw["dim_room"]
        env.num_boxes = kw["num_boxes"]
        env.max_turns = kw["max_turns"]
        env.num_gen_steps = int(1.7 * (kw["dim_room"][0] + kw["dim_room"][1]))
        env._is_random = False
    return env


@contextmanager
def preserved_global_rng() -> Iterator[None]:
    """GEM reseeds the global ``random``/``numpy.random``; restore them afterwards."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def same_step(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal values and equal types (a float reward stays a float)."""
    return a == b and [type(x) for x in a] == [type(x) for x in b]
