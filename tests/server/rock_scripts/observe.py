"""Run a script unchanged under rl-rock while recording what ROCK's client methods returned.

usage: python observe.py SCRIPT OUT.json -- wraps Sandbox.start/create_session/arun/stop and
RockEnv.reset/step/close, runs SCRIPT as __main__, then writes the recorded calls as JSON.
"""

import asyncio
import functools
import json
import runpy
import sys

from rock.sdk.envs.rock_env import RockEnv
from rock.sdk.sandbox.client import Sandbox

calls = []


def _plain(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, type(None), list)) else repr(value)


def _wrap(cls, name):
    original = getattr(cls, name)
    if asyncio.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapper(self, *args, **kwargs):
            result = await original(self, *args, **kwargs)
            calls.append({"call": name, "result": _plain(result), "sandbox_id": getattr(self, "sandbox_id", None)})
            return result

    else:

        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            calls.append({"call": name, "result": _plain(result)})
            return result

    setattr(cls, name, wrapper)


for _name in ("start", "create_session", "arun", "stop"):
    _wrap(Sandbox, _name)
for _name in ("reset", "step", "close"):
    _wrap(RockEnv, _name)

script, out = sys.argv[1], sys.argv[2]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open(out, "w") as fh:
        json.dump(calls, fh)
