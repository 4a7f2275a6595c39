"""Rollouts on a Ray cluster (``cluster=ray``): each episode is played by a Ray actor.

Every actor builds its own env and policy from the validated config (so ``backend=remote``
and sandbox envs work as they do locally) and plays whole episodes with
:func:`~rock_env.rollout.runner.play_episode`. The driver hands episode ``i`` (reset with
``episode_seeds(seed, episodes)[i]``) to the next idle actor and writes the results in episode
order, buffering those that finish early, so the files are byte for byte those of
``cluster=local num_envs=1`` with the same config and seed.

An actor that dies (its process or node is lost) is replaced and its episode rerun, up to
``cluster.max_retries`` times per episode; then the run fails with
:class:`~rock_env.errors.WorkerLost`. An error of the env or policy fails the run like a local
one: the finished episodes stay in the files and the original error is raised.

``cluster.address``: ``auto`` (the running cluster or ``$RAY_ADDRESS``; a Ray session this
process already has is used as is and left open), ``local`` (a private head on 127.0.0.1 for
this run, shut down after, its processes reaped) or ``HOST:PORT`` of a GCS.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rock_env.cluster.ray_connect import import_ray, init_ray
from rock_env.config.build import make_single_env
from rock_env.config.schema import RayClusterConfig, RolloutConfig
from rock_env.errors import ConfigError, WorkerLost
from rock_env.policies import Policy, make_policy
from rock_env.rollout.records import JsonlWriter
from rock_env.rollout.runner import (
    EPISODES,
    TRAJECTORIES,
    EpisodeResult,
    RolloutResult,
    close_quietly,
    episode_seeds,
    play_episode,
    write_summary,
)

logger = logging.getLogger(__name__)

#: Ray namespace of a session this run opens.
NAMESPACE = "rock-env-rollout"
#: Seconds the actors get to close their envs and policies at the end before they are killed.
CLOSE_TIMEOUT = 30.0
#: How far ahead of the oldest unwritten episode the actors may run, per actor: finished episodes
#: wait in memory for the slower ones before them, so this bounds that memory (and stalls the
#: actors only behind an episode that takes this many times longer than the others).
REORDER_WINDOW_PER_WORKER = 8
#: Prefix of a private head's temp dir (under ``$RAY_TMPDIR`` or /tmp; Ray's socket paths must stay short).
TEMP_PREFIX = "rock-ray-"

Records = list[dict[str, Any]]


class EpisodeActor:
    """The body of one Ray actor: an env and a policy, built on first use, that play episodes on request."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = RolloutConfig.model_validate(config)
        self.env: Any = None
        self.policy: Policy | None = None

    def play(self, episode: int, seed: int) -> tuple[Records, EpisodeResult]:
        """Play one episode; its JSONL records and result."""
        if self.policy is None:
            self.policy = make_policy(self.config.policy)
        if self.env is None:
            self.env = make_single_env(self.config)
        return play_episode(self.env, self.policy, episode, seed, self.config.max_steps, self.config.save_steps)

    def close(self) -> None:
        """Close the policy and the env (a sandbox env removes its sandbox)."""
        if self.policy is not None:
            close_quietly(self.policy.close, "policy")
            self.policy = None
        if self.env is not None:
            close_quietly(self.env.close, "env")
            self.env = None


@dataclass
class RaySession:
    """The Ray session a run uses: opened by the run (``owned``) or the caller's."""

    ray: ModuleType
    owned: bool
    #: A private head's temp dir, created by this run (``address=local``).
    temp_dir: str | None = None

    def close(self) -> None:
        """Leave Ray if this run joined it; for a private head, also kill what it left and drop its temp dir."""
        if not self.owned:
            return
        from rock_env.cluster import leftovers

        record_dir = Path(self.temp_dir) if self.temp_dir else None
        try:
            if record_dir is not None:
                leftovers.record(record_dir)  # the head's processes, to reap what ray.shutdown leaves
        except OSError as exc:
            logger.warning("cannot record the Ray head's processes in %s: %s", record_dir, exc)
        finally:
            self.ray.shutdown()
            if record_dir is not None:
                leftovers.reap(record_dir)
                _remove_temp_dir(str(record_dir))


def _remove_temp_dir(path: str) -> None:
    """Remove a private head's temp dir (only one this module created: a ``rock-ray-*`` dir)."""
    if os.path.basename(path).startswith(TEMP_PREFIX) and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def open_session(cluster: RayClusterConfig) -> RaySession:
    """Join the cluster of ``cluster.address`` (or use the Ray session this process already has)."""
    ray = import_ray(cluster.address)
    if ray.is_initialized():
        if cluster.address == "local":
            raise ConfigError(
                "cluster.address=local starts a private Ray head, but this process is already connected to Ray; "
                "use cluster.address=auto to run on that session (or ray.shutdown() first)."
            )
        gcs = str(ray.get_runtime_context().gcs_address)
        if cluster.address != "auto" and cluster.address.removeprefix("ray://") != gcs:
            raise ConfigError(
                f"this process is already connected to the Ray cluster at {gcs}, not cluster.address="
                f"{cluster.address}; use cluster.address=auto to run on that session (or ray.shutdown() first)."
            )
        logger.info("using this process's Ray session (%s)", gcs)
        return RaySession(ray, owned=False)
    temp_dir = None
    if cluster.address == "local":
        temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=os.environ.get("RAY_TMPDIR") or "/tmp")
    try:
        init_ray(cluster.address, namespace=NAMESPACE, temp_dir=temp_dir)
    except BaseException:
        if temp_dir is not None:
            _remove_temp_dir(temp_dir)
        raise
    return RaySession(ray, owned=True, temp_dir=temp_dir)


def worker_count(cluster: RayClusterConfig, episodes: int, node_cpus: Sequence[float]) -> int:
    """How many actors to start, given the CPUs of the alive nodes.

    ``cluster.workers`` if set (a :class:`ConfigError` if the cluster cannot hold that many),
    else as many as fit (each reserves ``cpus_per_worker``); never more than ``episodes``.
    """
    fit = sum(math.floor(c / cluster.cpus + 1e-9) for c in node_cpus)
    if fit < 1:
        raise ConfigError(
            f"no Ray node has {cluster.cpus:g} CPUs for an episode actor (nodes' CPUs: "
            f"{', '.join(f'{c:g}' for c in node_cpus) or 'none'}); lower cluster.cpus_per_worker or add nodes."
        )
    if cluster.workers is not None and cluster.workers > fit:
        raise ConfigError(
            f"cluster.workers={cluster.workers} actors of {cluster.cpus:g} CPUs do not fit on the Ray cluster "
            f"(room for {fit}); lower cluster.workers or cluster.cpus_per_worker, or leave cluster.workers=null."
        )
    wanted = fit if cluster.workers is None else cluster.workers
    return max(1, min(wanted, episodes))


def node_cpus(ray: ModuleType) -> list[float]:
    """The CPUs of each alive node of the cluster."""
    return [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]


@dataclass
class Scheduler:
    """Hands episodes to idle actors, replaces dead ones, and releases results in episode order."""

    ray: ModuleType
    config: RolloutConfig
    workers: int
    seeds: list[int]
    idle: list[Any] = field(default_factory=list)
    running: dict[Any, tuple[Any, int]] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)
    losses: dict[int, int] = field(default_factory=dict)
    buffer: dict[int, tuple[Records, EpisodeResult]] = field(default_factory=dict)
    started: list[Any] = field(default_factory=list)
    next_episode: int = 0
    #: The most finished episodes held back at once (waiting for an earlier one).
    peak_buffered: int = 0

    def __post_init__(self) -> None:
        cluster = self.config.cluster
        assert isinstance(cluster, RayClusterConfig)
        self._cluster = cluster
        self._payload = self.config.model_dump(mode="python", by_alias=True)
        self._actor_class = self.ray.remote(EpisodeActor).options(
            num_cpus=cluster.cpus, max_restarts=0, max_task_retries=0
        )
        self.window = REORDER_WINDOW_PER_WORKER * self.workers
        self.queue.extend(range(self.config.episodes))
        self.idle.extend(self._new_actor() for _ in range(self.workers))

    def _new_actor(self) -> Any:
        actor = self._actor_class.remote(self._payload)
        self.started.append(actor)
        return actor

    def run(self, emit: Callable[[Records, EpisodeResult], None]) -> None:
        """Play every episode; ``emit`` gets each one's records and result in episode order."""
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

        while self.next_episode < self.config.episodes:
            while self.idle and self.queue and self.queue[0] < self.next_episode + self.window:
                actor, episode = self.idle.pop(), self.queue.popleft()
                self.running[actor.play.remote(episode, self.seeds[episode])] = (actor, episode)
            ready, _ = self.ray.wait(list(self.running), num_returns=1)
            for ref in ready:
                actor, episode = self.running.pop(ref)
                try:
                    records, done = self.ray.get(ref)
                except RayTaskError as exc:  # the env or policy raised: fail like a local run
                    cause = exc.cause if isinstance(exc.cause, BaseException) else None
                    if cause is None:
                        raise
                    raise cause from exc
                except (RayActorError, ObjectLostError) as exc:
                    self._lost(actor, episode, exc)
                    continue
                self.idle.append(actor)
                self.buffer[episode] = (records, done)
                self.peak_buffered = max(self.peak_buffered, len(self.buffer))
            while self.next_episode in self.buffer:
                emit(*self.buffer.pop(self.next_episode))
                self.next_episode += 1

    def _lost(self, actor: Any, episode: int, exc: BaseException) -> None:
        """An actor died during ``episode``: rerun it on a fresh actor, or fail after ``max_retries``."""
        self.losses[episode] = self.losses.get(episode, 0) + 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first[:200]}"
        self._kill(actor)
        if self.losses[episode] > self._cluster.retries:
            raise WorkerLost(
                f"episode {episode} (seed {self.seeds[episode]}) lost its Ray actor {self.losses[episode]} times "
                f"({reason}); raise cluster.max_retries (now {self._cluster.retries}) or check the Ray nodes' logs "
                "(a node that died, or an env or policy that crashes its process)."
            )
        logger.warning("episode %d lost its Ray actor (%s); rerunning it on a fresh actor", episode, reason)
        self.queue.appendleft(episode)
        self.idle.append(self._new_actor())

    def finished(self) -> list[tuple[Records, EpisodeResult]]:
        """Episodes that finished but wait for an earlier one, in episode order (taken out of the buffer)."""
        out = [self.buffer[k] for k in sorted(self.buffer)]
        self.buffer.clear()
        return out

    def _kill(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            logger.debug("killing a Ray actor failed", exc_info=True)

    def close(self) -> None:
        """Let every actor close its env and policy (up to :data:`CLOSE_TIMEOUT`), then kill them all."""
        refs = []
        for actor in self.started:
            try:
                refs.append(actor.close.remote())
            except Exception:
                logger.debug("asking a Ray actor to close failed", exc_info=True)
        if refs:
            try:
                self.ray.wait(refs, num_returns=len(refs), timeout=CLOSE_TIMEOUT)
            except Exception:
                logger.debug("waiting for the Ray actors to close failed", exc_info=True)
        for actor in self.started:
            self._kill(actor)


def run_on_ray(
    config: RolloutConfig,
    out: Path,
    *,
    overrides: Sequence[str] = (),
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> RolloutResult:
    """:func:`~rock_env.rollout.run.run_rollout` for ``cluster=ray`` (``config`` is validated, ``out`` exists)."""
    cluster = config.cluster
    if not isinstance(cluster, RayClusterConfig):
        raise ConfigError(f"run_on_ray needs cluster=ray, got cluster={cluster.name}.")
    seeds = episode_seeds(config.seed, config.episodes)
    result = RolloutResult(output_dir=out)
    traj = JsonlWriter(out / TRAJECTORIES)
    eps = JsonlWriter(out / EPISODES)
    session: RaySession | None = None
    scheduler: Scheduler | None = None
    started = time.perf_counter()

    def write(records: Records, done: EpisodeResult) -> None:
        traj.write_many(records)
        eps.write_many([done.record()])
        result.episodes.append(done)
        result.total_steps += done.length

    def emit(records: Records, done: EpisodeResult) -> None:
        write(records, done)
        if on_episode is not None:
            on_episode(done)

    try:
        session = open_session(cluster)
        result.workers = worker_count(cluster, config.episodes, node_cpus(session.ray))
        scheduler = Scheduler(session.ray, config, result.workers, seeds)
        logger.debug("rollout of %s on Ray: %d actors", config.env.id, result.workers)
        started = time.perf_counter()
        scheduler.run(emit)
    except BaseException as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        if scheduler is not None:
            for records, done in scheduler.finished():  # finished after a gap: keep them too
                write(records, done)
        raise
    finally:
        result.wall_time = time.perf_counter() - started
        traj.close()
        eps.close()
        try:
            if scheduler is not None:
                scheduler.close()
        finally:
            if session is not None:
                session.close()
            write_summary(out, result.summary(config, overrides))
    return result
