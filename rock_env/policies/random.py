"""The random policy: ``env.sample_random_action()``."""

from __future__ import annotations

from typing import Any

from rock_env.errors import ConfigError
from rock_env.policies.base import Policy


class RandomPolicy(Policy):
    """Plays ``env.sample_random_action()``.

    The action comes from the env's own RNG. At each episode start the env's action space (if
    it has a seedable one) is seeded from the episode seed, so a seeded rollout is reproducible.
    """

    name = "random"

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        """Seed the env's action space from the episode seed."""
        seed_space = getattr(getattr(env, "action_space", None), "seed", None)
        if seed is not None and callable(seed_space):
            seed_space(seed)

    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        """A random action of ``env``."""
        sample = getattr(env, "sample_random_action", None)
        if sample is None:
            raise ConfigError(
                f"policy=random needs env.sample_random_action(), which {type(env).__name__} lacks; "
                "pick policy=scripted or policy=openai."
            )
        return sample()
