"""The sandbox SDK in one import: :class:`Sandbox` (sync) and :class:`AsyncSandbox` (async, ROCK-style ``arun``).

>>> from rock_env.sandbox.sdk import Sandbox
>>> with Sandbox(runtime="local") as sb:
...     sb.run("export X=1; cd /tmp").exit_code, sb.run("echo $X").output
(0, '1\\n')

The classes live in :mod:`rock_env.sandbox.local` (the sync sandbox), :mod:`rock_env.sandbox.aio`
(its async twin) and :mod:`rock_env.sandbox.processes` (background commands and streams); their
API is stated once in :mod:`rock_env.sandbox.contract`. This module keeps the old import path.
"""

from __future__ import annotations

from rock_env.sandbox.aio import AsyncSandbox
from rock_env.sandbox.local import DEFAULT_SESSION, Sandbox, new_sandbox_id
from rock_env.sandbox.processes import AsyncProcess, BackgroundProcess, OutputStream, collect_output

__all__ = [
    "DEFAULT_SESSION",
    "AsyncProcess",
    "AsyncSandbox",
    "BackgroundProcess",
    "OutputStream",
    "Sandbox",
    "collect_output",
    "new_sandbox_id",
]
