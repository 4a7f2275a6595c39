"""Sokoban, native and GEM-compatible: the env, the level generator and an optimal solver."""

from __future__ import annotations

from rock_env.games.sokoban.env import ACTIONS, SokobanEnv, parse_action
from rock_env.games.sokoban.generator import GENERATOR_VERSION, Room, RoomGenerationError, generate_room
from rock_env.games.sokoban.solver import SolverLimitExceeded, solve

__all__ = [
    "ACTIONS",
    "GENERATOR_VERSION",
    "Room",
    "RoomGenerationError",
    "SokobanEnv",
    "SolverLimitExceeded",
    "generate_room",
    "parse_action",
    "solve",
]
