"""The rollout entry point: validate a config, then run it here (:mod:`.runner`) or on Ray (:mod:`.ray_runner`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rock_env.config.schema import RayClusterConfig, validate_rollout_config
from rock_env.rollout.ray_runner import run_on_ray
from rock_env.rollout.runner import EpisodeResult, RolloutResult, check_supported, run_local


def run_rollout(
    cfg: Any,
    output_dir: Path | str,
    *,
    overrides: Sequence[str] = (),
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> RolloutResult:
    """Run ``cfg.episodes`` episodes and write ``trajectories.jsonl``, ``episodes.jsonl``, ``summary.json``.

    ``cfg`` is a rollout config (OmegaConf node, dict or :class:`~rock_env.config.schema.RolloutConfig`).
    If an env or the policy fails midway (e.g. the model server goes down), the episodes finished
    so far stay in the JSONL files, ``summary.json`` says ``"status": "failed"`` with the error,
    and the error is raised.
    """
    config = validate_rollout_config(cfg)
    check_supported(config)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = run_on_ray if isinstance(config.cluster, RayClusterConfig) else run_local
    return run(config, out, overrides=overrides, on_episode=on_episode)


__all__ = ["run_rollout"]
