"""How a worker turns hosted envs into wire answers: errors, spaces, tools, sampled actions, vector kwargs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rock_env.errors import DependencyMissing, InvalidAction, InvalidArgument, RockEnvError
from rock_env.protocol import TextSpaceInfo, jsonable

logger = logging.getLogger(__name__)

INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


def sub_env_kwargs(kwargs: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Each sub-env's kwargs: ``env_kwargs`` (one dict for all, or one per sub-env) plus the common ones."""
    per_env = kwargs.pop("env_kwargs", None)
    if per_env is None:
        return [dict(kwargs) for _ in range(num_envs)]
    if isinstance(per_env, dict):
        return [{**per_env, **kwargs} for _ in range(num_envs)]
    if isinstance(per_env, list) and len(per_env) == num_envs and all(isinstance(k, dict) for k in per_env):
        return [{**k, **kwargs} for k in per_env]
    count = len(per_env) if isinstance(per_env, list) else type(per_env).__name__
    raise InvalidArgument(f"env_kwargs as a list needs one dict per sub-env ({num_envs}), got {count} items.")


def wrap_env_error(exc: Exception, what: str) -> RockEnvError:
    if isinstance(exc, RockEnvError):
        return exc
    if isinstance(exc, ImportError):  # an optional dependency the env imports late
        return DependencyMissing(
            f"{what} needs the Python package {(exc.name or '?').split('.')[0]!r}, which is not installed on this "
            f"host ({exc}). Install it: pip install {(exc.name or '').split('.')[0] or '<package>'}"
        )
    if isinstance(exc, INPUT_ERRORS):
        return InvalidAction(f"{what} rejected the input: {type(exc).__name__}: {exc}")
    return RockEnvError(f"{what} failed: {type(exc).__name__}: {exc}")


def text_space_info(space: Any) -> TextSpaceInfo | None:
    """The wire form of a gymnasium ``Text`` space (``None`` for any other space)."""
    from gymnasium.spaces import Text

    if not isinstance(space, Text):
        return None
    return TextSpaceInfo(
        max_length=space.max_length, min_length=space.min_length, charset="".join(space.character_list)
    )


def tool_schemas_of(env: Any) -> list[dict[str, Any]] | None:
    """The env's ``tools`` as OpenAI tool schemas (JSON), ``None`` when it has none or they are not JSON."""
    tools = getattr(env, "tools", None)
    if tools is None:
        tools = getattr(getattr(env, "unwrapped", None), "tools", None)
    if tools is None:
        return None
    try:
        if callable(tools):
            tools = tools()
        out: list[dict[str, Any]] = []
        for tool in tools:
            if hasattr(tool, "openai_schema"):
                tool = tool.openai_schema()
            elif hasattr(tool, "model_dump"):
                tool = tool.model_dump(mode="json")
            if not isinstance(tool, dict):
                logger.warning("env tool %r is not an OpenAI tool schema; not sending the tools", tool)
                return None
            out.append(jsonable(tool))
    except Exception:
        logger.exception("reading the tools of %r failed", env)
        return None
    return out


def sample_action(env: Any) -> str:
    """``env.sample_random_action()`` (or a sample of its action space) as text."""
    sample = getattr(env, "sample_random_action", None)
    action = sample() if callable(sample) else env.action_space.sample()
    return action if isinstance(action, str) else str(action)


@dataclass
class HasTools:
    """Something with a ``tools`` attribute (a sub-env's tools read through a vector env)."""

    tools: Any


def close_quietly(obj: Any, obj_id: str) -> None:
    """``obj.close()``, logging instead of raising."""
    try:
        obj.close()
    except Exception:
        logger.exception("closing %s failed", obj_id)
