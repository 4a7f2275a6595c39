"""Vector envs: many sub-envs stepped as one batch, with Gymnasium 1.x semantics for text envs.

    import rock_env as rock

    envs = rock.make_vec("game:Sokoban-v0-easy", num_envs=8, mode="async", seed=0)
    observations, infos = envs.reset()  # a tuple of 8 strings; sub-env i seeded with 0 + i
    observations, rewards, terminations, truncations, infos = envs.step(["\\\\boxed{up}"] * 8)
    envs.close()

* :class:`SyncVectorEnv` steps the sub-envs one after the other in this process.
* :class:`AsyncVectorEnv` hosts them in env processes (several envs per process) and steps
  the processes in parallel.
* Autoreset modes (:mod:`rock_env.vector.autoreset`), info batching (:mod:`rock_env.vector.infos`)
  and error handling (:mod:`rock_env.vector.base`) are the same for both; for the same seeds
  and actions both modes give the same transcript.

Coming from GEM's ``gem.make_vec``: observations are a tuple (GEM: a list), infos are one dict
of arrays with ``_key`` masks (GEM: a list of dicts), the default autoreset mode is NEXT_STEP
(GEM's vector envs only do SAME_STEP: pass ``autoreset_mode="same_step"``), ``seed=`` seeds the
first reset (sub-env ``i`` gets ``seed + i``, as in GEM) and ``mode="async"`` uses processes
(GEM: threads). Actions are a list of ``num_envs`` strings (GEM also takes a dict of a subset).
"""

from __future__ import annotations

from rock_env.vector.async_env import AsyncVectorEnv
from rock_env.vector.autoreset import AutoresetMode, parse_autoreset_mode
from rock_env.vector.base import VectorEnv
from rock_env.vector.infos import batch_infos
from rock_env.vector.make import EnvFactory, make_vec
from rock_env.vector.sync import SyncVectorEnv

__all__ = [
    "AsyncVectorEnv",
    "AutoresetMode",
    "EnvFactory",
    "SyncVectorEnv",
    "VectorEnv",
    "batch_infos",
    "make_vec",
    "parse_autoreset_mode",
]
