"""Every built-in env passes Gymnasium's env checker and follows the GEM protocol."""

from __future__ import annotations

import pytest
from gymnasium.utils.env_checker import check_env

import rock_env as rock

BUILTIN = sorted(s.id for s in rock.list_envs(source="builtin"))


def test_builtin_families_are_registered() -> None:
    assert {"game:Sokoban-v0-easy", "tool:Bash-v0", "code:Python-v0", "code:Python-v0-strict"} <= set(BUILTIN)


@pytest.mark.bwrap
@pytest.mark.parametrize("env_id", BUILTIN)
def test_check_env_passes(env_id: str) -> None:
    kwargs = {"runtime": "namespace"} if rock.spec(env_id).needs_sandbox else {}
    env = rock.make(env_id, **kwargs)
    try:
        assert isinstance(env, rock.Env)
        check_env(env, skip_render_check=True, skip_close_check=True)
        obs, info = env.reset(seed=0)
        assert isinstance(obs, str) and isinstance(info, dict)
        assert env.observation_space.contains(obs)
        step = env.step(env.sample_random_action())
        assert isinstance(step[0], str) and isinstance(step[2], bool) and isinstance(step[3], bool)
    finally:
        env.close()
