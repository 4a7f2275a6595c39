"""Harness programs that run inside sandboxes (read as text and sent there; never imported by rock-env)."""

from __future__ import annotations

import functools
from importlib import resources

#: the module of the built-in tool-calling bash agent (stdlib only)
BUILTIN_HARNESS = "bash_agent.py"


@functools.cache
def harness_source(name: str = BUILTIN_HARNESS) -> str:
    """The source text of a shipped harness program."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


__all__ = ["BUILTIN_HARNESS", "harness_source"]
