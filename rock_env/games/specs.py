"""Built-in specs of the games family (entry points are strings: nothing is imported here)."""

from __future__ import annotations

from rock_env.registry.spec import EnvSpec

_SOKOBAN = "rock_env.games.sokoban.env:SokobanEnv"


def builtin_specs() -> list[EnvSpec]:
    """The native game envs; they take precedence over GEM's envs with the same ids."""
    return [
        EnvSpec(
            id="game:Sokoban-v0-easy",
            entry_point=_SOKOBAN,
            kwargs={"dim_room": (6, 6), "num_boxes": 2, "max_turns": 20},
            description="Sokoban 6x6, 2 boxes, 20 turns (GEM-exact, native).",
            source="builtin",
        ),
        EnvSpec(
            id="game:Sokoban-v0-hard",
            entry_point=_SOKOBAN,
            kwargs={"dim_room": (8, 8), "num_boxes": 4, "max_turns": 50},
            description="Sokoban 8x8, 4 boxes, 50 turns (GEM-exact, native).",
            source="builtin",
        ),
        EnvSpec(
            id="game:Sokoban-v0-random",
            entry_point=_SOKOBAN,
            kwargs={"dim_room": None, "num_boxes": None, "max_turns": None},
            description="Sokoban, per reset 6x6/2 boxes/20 turns or 8x8/5 boxes/50 turns (GEM-exact, native).",
            source="builtin",
        ),
    ]
