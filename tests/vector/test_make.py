"""make_vec: ids (registered at run time too), lists, factories, kwargs, and argument errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.errors import EnvNotFound, InvalidArgument, InvalidEnvKwargs
from rock_env.vector import AsyncVectorEnv, EnvFactory, SyncVectorEnv, make_vec
from tests.vector.conftest import live_workers
from tests.vector.envs import CountEnv, make_count_env

ENV_ID = "test:VecCount-v0"


@pytest.fixture
def count_id() -> Iterator[str]:
    rock.register(ENV_ID, "tests.vector.envs:CountEnv", kwargs={"length": 2})
    yield ENV_ID
    rock.registry.unregister(ENV_ID)


def test_rock_make_vec_builds_sub_envs_from_a_run_time_registration(count_id: str, mode: str) -> None:
    kwargs = {"num_workers": 2} if mode == "async" else {}
    with rock.make_vec(count_id, 3, mode=mode, seed=4, tag="t", **kwargs) as envs:
        assert isinstance(envs, SyncVectorEnv if mode == "sync" else AsyncVectorEnv)
        assert envs.env_id == count_id and envs.num_envs == 3
        obs, _ = envs.reset()
        assert obs[1] == CountEnv(length=2, tag="t").reset(seed=5)[0]
        assert envs.get_attr("length") == (2, 2, 2)
        _, _, terminated, _, _ = envs.step(["a"] * 3)
        _, _, terminated, _, _ = envs.step(["a"] * 3)
        assert terminated.all()


def test_max_episode_steps_truncates_and_autoresets(count_id: str) -> None:
    with make_vec(count_id, 2, env_kwargs={"length": 10}, max_episode_steps=2) as envs:
        envs.reset(seed=0)
        envs.step(["a", "a"])
        _, _, terminated, truncated, _ = envs.step(["a", "a"])
        assert truncated.tolist() == [True, True] and not terminated.any()
        obs, rewards, _, truncated, _ = envs.step(["a", "a"])
        assert all(o.startswith("start") for o in obs) and not rewards.any() and not truncated.any()


def test_per_env_kwargs_lists_and_factories(count_id: str) -> None:
    with make_vec(count_id, 2, env_kwargs=[{"tag": "a"}, {"tag": "b"}]) as envs:
        assert envs.get_attr("tag") == ("a", "b")
    with make_vec([count_id, make_count_env, lambda: CountEnv(tag="z")]) as envs:
        assert envs.num_envs == 3 and envs.get_attr("tag") == ("", "", "z")
        assert envs.env_id is None
    with make_vec(make_count_env, 2, mode="async", num_workers=1) as envs:
        assert envs.get_attr("length") == (3, 3)
    factory = EnvFactory(rock.spec(count_id), {"tag": "f"})
    assert factory().tag == "f" and "VecCount" in repr(factory)


def test_unknown_id_fails_before_any_worker_starts() -> None:
    with pytest.raises(EnvNotFound, match="Sokoban"):
        make_vec("game:Sokoban-v0-eazy", 2, mode="async")
    assert live_workers() == []


def test_bad_seed_fails_without_leaking_envs_or_workers(count_id: str, mode: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="got 1 seeds for 2 sub-envs"):
        make_vec(count_id, 2, mode=mode, seed=[1], close_dir=str(tmp_path))
    assert len(list(tmp_path.glob("closed-*"))) == 2  # the sub-envs that were built got closed


def test_unknown_kwarg_is_reported_with_its_index(count_id: str) -> None:
    with pytest.raises(InvalidEnvKwargs, match=r"sub-env 0 .*does not accept 'colour'"):
        make_vec(count_id, 2, colour="red")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((ENV_ID, 0), {}, "num_envs must be a positive int"),
        ((ENV_ID, True), {}, "num_envs must be a positive int"),
        ((ENV_ID, 2), {"mode": "threads"}, "mode must be"),
        (([ENV_ID, ENV_ID], 3), {}, "num_envs=3 but 2"),
        (([],), {}, "empty"),
        ((42,), {}, "env_id must be"),
        (([ENV_ID, 42],), {}, "not an env id or factory"),
        ((make_count_env, 2), {"tag": "x"}, "cannot be passed to a factory"),
        ((ENV_ID, 2), {"num_workers": 2}, "only apply to mode='async'"),
        ((ENV_ID, 2), {"env_kwargs": [{}]}, "one dict per sub-env"),
        ((ENV_ID, 2), {"env_kwargs": "x"}, "dict or a list of dicts"),
        ((ENV_ID, 2), {"autoreset_mode": "sometimes"}, "autoreset_mode"),
    ],
)
def test_argument_errors(count_id: str, args: tuple[object, ...], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        make_vec(*args, **kwargs)  # type: ignore[arg-type]


def test_gem_sokoban_sub_envs_match_single_envs_on_the_same_seeds(mode: str) -> None:
    env_id = "game:Sokoban-v0-easy"
    with rock.make_vec(env_id, 2, mode=mode) as envs:
        obs, infos = envs.reset(seed=11)
        for i in range(2):
            single = rock.make(env_id)
            single_obs, single_info = single.reset(seed=11 + i)
            assert obs[i] == single_obs and infos["suffix"][i] == single_info["suffix"]
        _, rewards, terminated, _, _ = envs.step(["\\boxed{up}", "not an action"])
        assert rewards.dtype.name == "float64" and terminated[1]  # GEM ends the episode on an invalid action


def test_sokoban_transcripts_with_autoresets_match_across_modes_and_repeat() -> None:
    """The registered Sokoban, 8 envs, 30 steps with invalid actions that end episodes often."""
    moves = ["\\boxed{up}", "\\boxed{down}", "\\boxed{left}", "\\boxed{right}", "no move"]
    plan = [[moves[(7 * t + 3 * i) % 5] for i in range(8)] for t in range(30)]

    def transcript(mode: str) -> list[object]:
        with rock.make_vec("game:Sokoban-v0-easy", 8, mode=mode, autoreset_mode="same_step") as envs:
            out: list[object] = [envs.reset(seed=5)[0]]
            for actions in plan:
                obs, rewards, terminated, truncated, infos = envs.step(actions)
                out.append((obs, rewards.tolist(), terminated.tolist(), truncated.tolist(), "final_obs" in infos))
            return out

    sync = transcript("sync")
    assert sum(sum(step[2]) for step in sync[1:]) >= 8  # type: ignore[index]  # episodes ended and autoreset
    assert transcript("sync") == sync
    assert transcript("async") == sync
