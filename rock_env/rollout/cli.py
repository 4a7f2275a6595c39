"""``rock-env rollout``: run episodes from the Hydra config, or sweep with ``-m``.

    rock-env rollout env=sokoban_easy policy=random episodes=200 seed=0
    rock-env rollout -m env=sokoban_easy,sokoban_hard policy=random,scripted seed=0,1,2
    rock-env rollout --cfg job            # print the composed config and exit

Each run writes ``trajectories.jsonl``, ``episodes.jsonl`` and ``summary.json`` into its Hydra
output directory (``outputs/DATE/TIME`` or ``output_dir=...``); a sweep also writes
``sweep.csv`` and ``sweep.md`` into its sweep directory (``multirun/DATE/TIME``). All Hydra
command-line flags work (``--config-dir``, ``hydra.run.dir=...``, ``hydra/launcher=...``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rock_env.config.compose import (
    CONFIG_PATH,
    ROLLOUT_CONFIG,
    check_group_choices,
    compose_config,
    first_combination,
    group_options,
)
from rock_env.config.schema import validate_rollout_config
from rock_env.errors import RockEnvError

logger = logging.getLogger(__name__)

#: The config groups of ``rollout.yaml``.
ROLLOUT_GROUPS: tuple[str, ...] = ("env", "backend", "runtime", "policy", "cluster")
#: Hydra flags that take a value (the value is not an override).
_FLAGS_WITH_VALUE = {
    "-cd",
    "--config-dir",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-c",
    "--cfg",
    "-p",
    "--package",
    "--experimental-rerun",
}
#: Hydra flags after which no rollout runs (they only print).
_PRINT_ONLY = {"-c", "--cfg", "--info", "--hydra-help", "-h", "--help"}


def usage() -> str:
    """The help text, with the available config groups and options."""
    lines = [__doc__.strip() if __doc__ else "", "", "Config groups (pick one with group=option):"]
    for group in ROLLOUT_GROUPS:
        lines.append(f"  {group:<8} {', '.join(group_options(group))}")
    lines += [
        "",
        "Top-level keys: episodes, seed, num_envs, threads, max_steps, output_dir, save_steps, progress.",
        "Run 'rock-env rollout --cfg job' to see every key with its current value.",
    ]
    return "\n".join(lines)


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(flags, overrides)``: Hydra flags (with their values) and ``key=value`` overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            flags.append(arg)
            if arg in _FLAGS_WITH_VALUE and "=" not in arg and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def precheck(overrides: Sequence[str], flags: Sequence[str]) -> None:
    """Fail fast with a :class:`ConfigError` on unknown options, unknown keys or wrong types.

    Skipped for group choices when ``--config-dir`` adds configs we cannot see here.
    """
    own_dirs = any(f in {"-cd", "--config-dir"} or f.startswith("--config-dir=") for f in flags)
    if own_dirs or any(f in {"-cn", "--config-name"} for f in flags):
        return
    from rock_env.rollout.runner import check_supported

    check_group_choices(overrides)
    check_supported(validate_rollout_config(compose_config(first_combination(overrides), ROLLOUT_CONFIG)))


class _Outcome:
    """Failures of the jobs run by one ``main`` call."""

    def __init__(self) -> None:
        self.failures: list[str] = []


_outcome = _Outcome()


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        logger.info("install tqdm for a progress bar")
        return None
    return tqdm(total=total, desc=desc, unit="ep", file=sys.stderr, dynamic_ncols=True)


def run_job(cfg: Any) -> dict[str, Any]:
    """The Hydra task: run one rollout into the job's output directory; return its summary.

    A failing job (an invalid config, an env or model server that fails) does not stop a sweep:
    its ``summary.json`` says ``"status": "failed"`` with the error, it shows in the sweep
    table, and ``rock-env rollout`` exits with status 1 at the end.
    """
    import json

    from hydra.core.hydra_config import HydraConfig

    from rock_env.rollout.run import run_rollout
    from rock_env.rollout.runner import SUMMARY, failed_summary, write_summary

    hydra_cfg = HydraConfig.get()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the job's log
    overrides = list(hydra_cfg.overrides.task)
    label = " ".join(overrides) or "(defaults)"
    try:
        config = validate_rollout_config(cfg)
    except RockEnvError as exc:
        out = Path(hydra_cfg.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        logger.error("rollout %s: %s", label, exc)
        _outcome.failures.append(f"{label}: {exc}")
        failed = failed_summary(cfg, exc, overrides)
        write_summary(out, failed)
        return failed
    out = Path(config.output_dir) if config.output_dir else Path(hydra_cfg.runtime.output_dir)
    bar = _progress_bar(config.episodes, config.progress, f"{config.env.id} {config.policy.name}")
    successes = 0

    def on_episode(ep: Any) -> None:
        nonlocal successes
        successes += int(ep.success)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(success=f"{successes / bar.n:.2f}")

    try:
        run_rollout(config, out, overrides=overrides, on_episode=on_episode)
    except RockEnvError as exc:
        logger.error("rollout %s failed: %s (finished episodes are kept in %s)", label, exc, out)
        _outcome.failures.append(f"{label}: {exc}")
    except Exception as exc:  # e.g. a bug in a user's scripted policy: record it, let the sweep go on
        logger.exception("rollout %s failed (finished episodes are kept in %s)", label, out)
        _outcome.failures.append(f"{label}: {type(exc).__name__}: {exc}")
    finally:
        if bar is not None:
            bar.close()
    summary_path = out / SUMMARY
    if not summary_path.exists():  # failed before the rollout could write anything
        failed = failed_summary(cfg, RockEnvError(_outcome.failures[-1]), overrides)
        write_summary(out, failed)
        return failed
    summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary["status"] == "ok":
        logger.info(
            "%d episodes: success %.3f, return %.3f +- %.3f, length %.1f, %.1f steps/s -> %s",
            summary["episodes"],
            summary["success_rate"],
            summary["mean_return"],
            summary["std_return"],
            summary["mean_length"],
            summary["steps_per_s"],
            out,
        )
    return summary


def main(argv: Sequence[str]) -> int:
    """Entry point of ``rock-env rollout`` (Hydra overrides; ``-m`` for a sweep)."""
    import hydra

    args = list(argv)
    if any(a in {"-h", "--help"} for a in args):
        print(usage())
        return 0
    flags, overrides = split_args(args)
    if not any(f in _PRINT_ONLY for f in flags):
        precheck(overrides, flags)

    @hydra.main(version_base=None, config_path=CONFIG_PATH, config_name=ROLLOUT_CONFIG)
    def _entry(cfg: Any) -> Any:
        return run_job(cfg)

    _outcome.failures.clear()
    saved = sys.argv
    sys.argv = ["rock-env-rollout", *args]
    try:
        _entry()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if code:
            return code
    finally:
        sys.argv = saved
    if _outcome.failures:
        for failure in _outcome.failures:
            print(f"rock-env rollout: failed: {failure}", file=sys.stderr)
        return 1
    return 0
