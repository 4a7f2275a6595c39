"""Native games (pure logic and text rendering, no I/O): :mod:`rock_env.games.sokoban` first."""

from __future__ import annotations
