"""Running episodes of an env with a policy and writing trajectories and a summary.

``num_envs`` envs are stepped in lockstep: each slot plays an episode and takes the next one
when it finishes. When the work mostly waits (a remote backend, a sandbox env, a chat-model
policy), each slot runs in its own thread, so a batch costs about one round trip; see
:func:`thread_plan`. Envs from GEM's registry draw from global RNGs, so their steps always run
one after the other in slot order, which keeps them reproducible.

Episode ``i`` is reset with ``episode_seeds(seed, n)[i]`` (from ``numpy.random.SeedSequence``):
the same config and seed give the same episodes, and ``trajectories.jsonl``/``episodes.jsonl``
come out byte for byte the same, threaded or not.

With ``cluster=ray`` the episodes run in Ray actors instead (:mod:`rock_env.rollout.ray_runner`);
both runners play an episode with the same :class:`_Slot` logic (:func:`play_episode`).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rock_env.config.build import make_single_env
from rock_env.config.schema import RayClusterConfig, RemoteBackendConfig, RolloutConfig
from rock_env.errors import ConfigError
from rock_env.policies import Policy, make_policy
from rock_env.rollout.records import JsonlWriter, to_jsonable

logger = logging.getLogger(__name__)

TRAJECTORIES = "trajectories.jsonl"
EPISODES = "episodes.jsonl"
SUMMARY = "summary.json"


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The reset seed of each episode: the first ``episodes`` words of ``SeedSequence(seed)``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(episodes, dtype=np.uint32)]


def episode_success(final_info: dict[str, Any], terminated: bool, truncated: bool, episode_return: float) -> bool:
    """``info["success"]`` of the last step when the env reports it.

    Otherwise an episode succeeded when it terminated without being truncated and its return
    is positive (GEM games set both flags when they run out of turns).
    """
    if "success" in final_info:
        return bool(final_info["success"])
    return bool(terminated and not truncated and episode_return > 0)


@dataclass
class EpisodeResult:
    """One finished episode."""

    episode: int
    seed: int
    episode_return: float
    length: int
    success: bool
    terminated: bool
    truncated: bool

    def record(self) -> dict[str, Any]:
        """The ``episode`` JSONL record."""
        return {
            "type": "episode",
            "episode": self.episode,
            "seed": self.seed,
            "return": self.episode_return,
            "length": self.length,
            "success": self.success,
            "terminated": self.terminated,
            "truncated": self.truncated,
        }


@dataclass
class RolloutResult:
    """What a rollout produced: the finished episodes, timing, and where the files are."""

    output_dir: Path
    episodes: list[EpisodeResult] = field(default_factory=list)
    total_steps: int = 0
    wall_time: float = 0.0
    status: str = "ok"
    error: str | None = None
    #: Ray actors that played the episodes (``None``: ``cluster=local``).
    workers: int | None = None

    def summary(self, cfg: RolloutConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
        """The ``summary.json`` content."""
        returns = [e.episode_return for e in self.episodes]
        lengths = [e.length for e in self.episodes]
        n = len(self.episodes)
        return {
            "status": self.status,
            "error": self.error,
            "env": cfg.env.id,
            "policy": cfg.policy.name,
            "backend": cfg.backend.name,
            "seed": cfg.seed,
            "episodes_requested": cfg.episodes,
            "episodes": n,
            "success_rate": sum(e.success for e in self.episodes) / n if n else math.nan,
            "mean_return": statistics.fmean(returns) if n else math.nan,
            "std_return": statistics.pstdev(returns) if n else math.nan,
            "mean_length": statistics.fmean(lengths) if n else math.nan,
            "total_steps": self.total_steps,
            "wall_time_s": round(self.wall_time, 6),
            "steps_per_s": self.total_steps / self.wall_time if self.wall_time > 0 else math.nan,
            "num_envs": cfg.num_envs,
            "cluster": cfg.cluster.name,
            "workers": self.workers,
            "overrides": list(overrides),
            "config": cfg.model_dump(mode="json", by_alias=True),
        }


class _Slot:
    """One env in the lockstep, with its policy and the episode it is playing."""

    def __init__(self, env: Any, policy: Policy) -> None:
        self.env = env
        self.policy = policy
        self.episode: int | None = None
        self.seed = 0
        self.records: list[dict[str, Any]] = []
        self.obs = ""
        self.info: dict[str, Any] = {}
        self.episode_return = 0.0
        self.length = 0

    def start(self, episode: int, seed: int) -> None:
        obs, info = self.env.reset(seed=seed)
        self.episode, self.seed = episode, seed
        self.obs, self.info = obs, dict(info or {})
        self.episode_return, self.length = 0.0, 0
        self.records = [{"type": "reset", "episode": episode, "seed": seed, "observation": obs, "info": self.info}]
        self.policy.reset(self.env, obs, self.info, seed=seed)

    def act(self) -> Any:
        """Ask the policy for the next action."""
        return self.policy.act(self.env, self.obs, self.info)

    def step(self, action: Any, max_steps: int | None, save_steps: bool) -> EpisodeResult | None:
        """Apply ``action``; return the episode's result when it ended."""
        assert self.episode is not None
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info or {})
        reward = float(reward)
        self.length += 1
        self.episode_return += reward
        if max_steps is not None and self.length >= max_steps and not terminated:
            truncated = True
        self.policy.observe(reward, bool(terminated), bool(truncated), info)
        if save_steps:
            self.records.append(
                {
                    "type": "step",
                    "episode": self.episode,
                    "step": self.length,
                    "action": action,
                    "observation": obs,
                    "reward": reward,
                    "terminated": bool(terminated),
                    "truncated": bool(truncated),
                    "info": info,
                }
            )
        self.obs, self.info = obs, info
        if not (terminated or truncated):
            return None
        result = EpisodeResult(
            episode=self.episode,
            seed=self.seed,
            episode_return=self.episode_return,
            length=self.length,
            success=episode_success(info, bool(terminated), bool(truncated), self.episode_return),
            terminated=bool(terminated),
            truncated=bool(truncated),
        )
        self.records.append(result.record())
        self.episode = None
        return result


def play_episode(
    env: Any, policy: Policy, episode: int, seed: int, max_steps: int | None, save_steps: bool
) -> tuple[list[dict[str, Any]], EpisodeResult]:
    """Play episode ``episode`` (reset with ``seed``) to its end; its JSONL records and result.

    The same :class:`_Slot` logic as the lockstep runner, one episode at a time (a Ray actor's unit of work).
    """
    slot = _Slot(env, policy)
    slot.start(episode, seed)
    while True:
        done = slot.step(slot.act(), max_steps, save_steps)
        if done is not None:
            return slot.records, done


def check_supported(config: RolloutConfig) -> None:
    """Raise :class:`ConfigError` for settings that validate but cannot run together.

    ``cluster=ray`` plays one env per actor: ``num_envs`` > 1 there is an error (use ``cluster.workers``).
    """
    if isinstance(config.cluster, RayClusterConfig) and config.num_envs > 1:
        raise ConfigError(
            f"num_envs={config.num_envs} does not apply to cluster=ray (each Ray actor plays one env); "
            f"set cluster.workers={config.num_envs} instead and leave num_envs=1."
        )


@dataclass(frozen=True)
class ThreadPlan:
    """Which phases of a lockstep step run one thread per slot."""

    policy: bool
    env: bool


def thread_plan(config: RolloutConfig, n_slots: int) -> ThreadPlan:
    """Decide what to run in threads.

    ``threads=null`` (auto): policy calls are threaded for the ``openai`` policy; env steps
    for the remote backend and for envs that own a sandbox. ``threads=false``: nothing.
    ``threads=true``: both. Steps of GEM-registry envs are never threaded (they use global
    RNGs, so thread scheduling would change the episodes); ``threads=true`` with one of them is
    a :class:`ConfigError`.
    """
    if n_slots <= 1 or config.threads is False:
        return ThreadPlan(policy=False, env=False)
    from rock_env.registry import spec as env_spec

    spec = env_spec(config.env.id)
    gem = spec.source == "gem"
    if config.threads is True:
        if gem:
            raise ConfigError(
                f"threads=true: {config.env.id} comes from GEM's registry and draws from global RNGs, so "
                "stepping it in threads would make episodes irreproducible; use threads=null or threads=false."
            )
        return ThreadPlan(policy=True, env=True)
    io_env = isinstance(config.backend, RemoteBackendConfig) or spec.needs_sandbox
    return ThreadPlan(policy=config.policy.name == "openai", env=io_env and not gem)


def write_summary(output_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` into ``output_dir``."""
    path = output_dir / SUMMARY
    path.write_text(json.dumps(to_jsonable(summary), indent=2) + "\n", encoding="utf-8")
    return path


def failed_summary(cfg: Any, error: BaseException, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``summary.json`` of a run that failed before any episode (e.g. an invalid config)."""
    from rock_env.config.schema import to_plain

    data = to_plain(cfg)
    data = {k: v for k, v in data.items() if k != "hydra"} if isinstance(data, dict) else {}

    def field_of(section: str, key: str) -> Any:
        node = data.get(section)
        return node.get(key) if isinstance(node, dict) else None

    return {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "env": field_of("env", "id"),
        "policy": field_of("policy", "name"),
        "backend": field_of("backend", "name"),
        "seed": data.get("seed"),
        "episodes_requested": data.get("episodes"),
        "episodes": 0,
        "success_rate": math.nan,
        "mean_return": math.nan,
        "std_return": math.nan,
        "mean_length": math.nan,
        "total_steps": 0,
        "wall_time_s": 0.0,
        "steps_per_s": math.nan,
        "num_envs": data.get("num_envs"),
        "overrides": list(overrides),
        "config": data,
    }


def run_local(
    config: RolloutConfig,
    out: Path,
    *,
    overrides: Sequence[str] = (),
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> RolloutResult:
    """:func:`~rock_env.rollout.run.run_rollout` in this process (``config`` is validated, ``out`` exists)."""
    seeds = episode_seeds(config.seed, config.episodes)
    result = RolloutResult(output_dir=out)
    slots: list[_Slot] = []
    started = time.perf_counter()
    traj = JsonlWriter(out / TRAJECTORIES)
    eps = JsonlWriter(out / EPISODES)
    pool: ThreadPoolExecutor | None = None
    try:
        n_slots = min(config.num_envs, config.episodes)
        plan = thread_plan(config, n_slots)
        for _ in range(n_slots):
            policy = make_policy(config.policy)
            try:
                env = make_single_env(config)
            except BaseException:
                policy.close()
                raise
            slots.append(_Slot(env, policy))
        started = time.perf_counter()  # steps/s measures episodes, not env construction
        if plan.policy or plan.env:
            pool = ThreadPoolExecutor(max_workers=n_slots, thread_name_prefix="rollout-slot")
        logger.debug("rollout of %s: %d slots, threads %s", config.env.id, n_slots, plan)

        def run(threaded: bool, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
            if pool is None or not threaded or len(items) < 2:
                return [fn(item) for item in items]
            return list(pool.map(fn, items))

        def start(job: tuple[_Slot, int]) -> None:
            job[0].start(job[1], seeds[job[1]])

        run(plan.env, start, [(slot, k) for k, slot in enumerate(slots)])
        next_episode = len(slots)
        while any(s.episode is not None for s in slots):
            active = [s for s in slots if s.episode is not None]
            actions = run(plan.policy, _Slot.act, active)
            outcomes = run(
                plan.env,
                lambda job: job[0].step(job[1], config.max_steps, config.save_steps),
                list(zip(active, actions, strict=True)),
            )
            result.total_steps += len(active)
            restart: list[tuple[_Slot, int]] = []
            for slot, done in zip(active, outcomes, strict=True):
                if done is None:
                    continue
                traj.write_many(slot.records)
                eps.write_many([done.record()])
                result.episodes.append(done)
                if on_episode is not None:
                    on_episode(done)
                if next_episode < config.episodes:
                    restart.append((slot, next_episode))
                    next_episode += 1
            if restart:
                run(plan.env, start, restart)
    except BaseException as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        result.wall_time = time.perf_counter() - started
        traj.close()
        eps.close()
        if pool is not None:
            pool.shutdown(wait=True)
        for slot in slots:
            close_quietly(slot.policy.close, "policy")
            close_quietly(slot.env.close, "env")
        write_summary(out, result.summary(config, overrides))
    return result


def close_quietly(close: Callable[[], Any], what: str) -> None:
    """Call ``close``; log (do not raise) what it raises, so a rollout's own error is not hidden."""
    try:
        close()
    except Exception:  # closing must not hide the rollout's own error
        logger.exception("closing the %s failed", what)
