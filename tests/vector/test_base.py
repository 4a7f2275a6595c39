"""Vector env semantics shared by both modes (each test runs with mode=sync and mode=async)."""

from __future__ import annotations

import random
from typing import Any

import gymnasium
import numpy as np
import pytest

from rock_env.errors import (
    EnvClosed,
    InvalidAction,
    InvalidArgument,
    ResetNeeded,
    SubEnvError,
)
from rock_env.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv
from tests.vector.envs import CountEnv


def make(mode: str, num_envs: int = 4, length: int = 3, workers: int = 1, **kwargs: Any) -> VectorEnv:
    """Sub-env i has episodes of ``length + i % 2`` steps; async mode uses ``workers`` processes."""
    fns = [lambda i=i: CountEnv(length=length + i % 2, tag=f"e{i}") for i in range(num_envs)]
    if mode == "sync":
        return SyncVectorEnv(fns, **kwargs)
    return AsyncVectorEnv(fns, num_workers=workers, **kwargs)


def test_reset_returns_a_tuple_of_strings_and_batched_infos(mode: str) -> None:
    with make(mode) as envs:
        obs, infos = envs.reset(seed=10)
        assert isinstance(obs, tuple) and len(obs) == 4 and all(isinstance(o, str) for o in obs)
        assert infos["_draw"].all() and infos["draw"].dtype == np.int64
        assert envs.observation_space.contains(obs)
        assert envs.single_observation_space == CountEnv().observation_space


def test_int_seed_gives_sub_env_i_seed_plus_i(mode: str) -> None:
    with make(mode, workers=2) as envs:
        obs, _ = envs.reset(seed=10)
        for i in range(4):
            single = CountEnv(tag=f"e{i}")
            assert single.reset(seed=10 + i)[0] == obs[i]
        again, _ = envs.reset(seed=10)
        assert again == obs
        other, _ = envs.reset(seed=[13, 12, None, 10])
        assert other[0] == CountEnv(tag="e0").reset(seed=13)[0]
        assert other[3] == CountEnv(tag="e3").reset(seed=10)[0]


def test_constructor_seed_makes_unseeded_resets_reproducible(mode: str) -> None:
    transcripts = []
    for _ in range(2):
        with make(mode, seed=5) as envs:
            first, _ = envs.reset()
            for _ in range(4):
                envs.step(["x"] * 4)  # episodes end and autoreset without a seed
            second, _ = envs.reset()
            transcripts.append((first, second))
    assert transcripts[0] == transcripts[1]
    assert transcripts[0][0][2] == CountEnv(tag="e2").reset(seed=7)[0]


def test_step_arrays_have_gymnasium_dtypes(mode: str) -> None:
    with make(mode) as envs:
        envs.reset(seed=0)
        obs, rewards, terminated, truncated, infos = envs.step(["a", "bb", "ccc", ""])
        assert rewards.dtype == np.float64 and rewards.tolist() == [1.0, 2.0, 3.0, 0.0]
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        assert infos["t"].tolist() == [1, 1, 1, 1] and infos["ratio"].dtype == np.float64
        assert obs[1].endswith("a=bb")


def test_next_step_autoreset(mode: str) -> None:
    with make(mode, num_envs=2, length=1) as envs:  # env 0 ends after 1 step, env 1 after 2
        envs.reset(seed=0)
        _, rewards, terminated, _, infos = envs.step(["ab", "ab"])
        assert terminated.tolist() == [True, False]
        obs, rewards, terminated, truncated, infos = envs.step(["ignored", "xyz"])
        assert obs[0].startswith("start") and rewards[0] == 0.0
        assert not terminated[0] and not truncated[0]
        assert infos["kind"].tolist() == ["reset", "step"] and infos["episode"][0] == 1
        assert terminated[1] and rewards[1] == 3.0
        assert "final_obs" not in infos


def test_same_step_autoreset_keeps_final_obs_and_info(mode: str) -> None:
    with make(mode, workers=2, num_envs=2, length=1, autoreset_mode="same_step") as envs:
        envs.reset(seed=0)
        obs, rewards, terminated, _, infos = envs.step(["ab", "ab"])
        assert terminated.tolist() == [True, False] and rewards.tolist() == [2.0, 2.0]
        assert obs[0].startswith("start") and "t=1" in obs[1]
        assert infos["_final_obs"].tolist() == [True, False]
        assert "t=1 a=ab" in infos["final_obs"][0] and infos["final_obs"][1] is None
        assert infos["final_info"]["done_at"].tolist() == [1, 0]
        assert infos["final_info"]["_done_at"].tolist() == [True, False]
        assert infos["kind"][0] == "reset"


def test_disabled_autoreset_needs_a_masked_reset(mode: str) -> None:
    with make(mode, workers=2, num_envs=2, length=1, autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED) as envs:
        envs.reset(seed=0)
        obs, _, terminated, _, _ = envs.step(["a", "a"])
        assert terminated.tolist() == [True, False]
        with pytest.raises(ResetNeeded, match=r"\[0\]"):
            envs.step(["a", "a"])
        mask = np.array([True, False])
        after, infos = envs.reset(options={"reset_mask": mask})
        assert after[0].startswith("start") and after[1] == obs[1]
        assert infos["_draw"].tolist() == [True, False]
        _, _, terminated, _, _ = envs.step(["a", "a"])
        assert terminated.tolist() == [True, True]


def test_reset_mask_is_validated(mode: str) -> None:
    with make(mode, num_envs=2) as envs:
        with pytest.raises(ResetNeeded, match="first reset"):
            envs.reset(options={"reset_mask": np.array([True, False])})
        envs.reset()
        for bad in (np.array([1, 0]), np.array([True]), np.array([False, False])):
            with pytest.raises(InvalidArgument, match="reset_mask"):
                envs.reset(options={"reset_mask": bad})
        obs, _ = envs.reset(seed=1, options={"reset_mask": [False, True], "start": "go"})
        assert obs[1].startswith("go") and obs[0].startswith("start")
        assert not envs.closed


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (["a"], "got 1 actions for 2"),
        (["a", "b", "c"], "got 3 actions"),
        ("ab", "list of 2 strings"),
        ({0: "a", 1: "b"}, "list of 2 strings"),
        (None, "list of 2 strings"),
        (["a", 2.5], r"index 1 \(float\)"),
        ([1, b"x"], r"index 0 \(int\), 1 \(bytes\)"),
    ],
)
def test_bad_action_batches_raise_invalid_action_and_keep_the_env_usable(
    mode: str, actions: object, match: str
) -> None:
    with make(mode, num_envs=2) as envs:
        envs.reset(seed=0)
        with pytest.raises(InvalidAction, match=match):
            envs.step(actions)  # type: ignore[arg-type]
        assert not envs.closed
        _, rewards, _, _, _ = envs.step(["a", "b"])
        assert rewards.tolist() == [1.0, 1.0]


def test_huge_and_unicode_actions_pass_through(mode: str) -> None:
    with make(mode, num_envs=2, length=5) as envs:
        envs.reset(seed=0)
        rng = random.Random(0)
        weird = "".join(chr(rng.randint(0x20, 0x2FFFF)) for _ in range(200)).encode("utf-8", "replace").decode()
        _, rewards, _, _, _ = envs.step(["x" * (1 << 20), weird])
        assert rewards.tolist() == [float(1 << 20), float(len(weird))]
        assert envs.action_space.contains(("x", "y"))


def test_step_before_reset_and_after_close(mode: str) -> None:
    envs = make(mode, num_envs=2)
    with pytest.raises(ResetNeeded, match="reset"):
        envs.step(["a", "b"])
    envs.close()
    envs.close()  # idempotent
    assert envs.closed
    with pytest.raises(EnvClosed):
        envs.reset()
    with pytest.raises(EnvClosed):
        envs.step(["a", "b"])


@pytest.mark.parametrize("bad", [[1, 2], "7", 1.5, [1, "2", 3, 4], [True, 1, 2, 3]])
def test_bad_seeds(mode: str, bad: object) -> None:
    with make(mode) as envs, pytest.raises(InvalidArgument, match="seed"):
        envs.reset(seed=bad)  # type: ignore[arg-type]


def test_call_get_attr_set_attr_render(mode: str) -> None:
    with make(mode, num_envs=3) as envs:
        obs, _ = envs.reset(seed=0)
        assert envs.get_attr("tag") == ("e0", "e1", "e2")
        assert envs.call("describe", "p-") == ("p-e0:0", "p-e1:0", "p-e2:0")
        assert envs.call("describe", prefix="q-")[2] == "q-e2:0"
        envs.set_attr("tag", ["x", "y", "z"])
        assert envs.get_attr("tag") == ("x", "y", "z")
        envs.set_attr("tag", "same")
        assert envs.get_attr("tag") == ("same",) * 3
        assert envs.render() == obs
        with pytest.raises(InvalidArgument, match="one per sub-env"):
            envs.set_attr("tag", ["only-one"])
        assert envs.metadata["autoreset_mode"] is gymnasium.vector.AutoresetMode.NEXT_STEP
        assert "num_envs=3" in repr(envs)


def test_sync_and_async_give_identical_transcripts() -> None:
    transcripts = []
    for mode in ("sync", "async"):
        rng = random.Random(1)
        with make(mode, workers=2, num_envs=5, autoreset_mode="same_step") as envs:
            steps: list[Any] = [envs.reset(seed=3)[0]]
            for _ in range(12):
                obs, rewards, terminated, truncated, infos = envs.step([rng.choice("abc") * 2 for _ in range(5)])
                steps.append((obs, rewards.tolist(), terminated.tolist(), truncated.tolist(), infos["kind"].tolist()))
            transcripts.append(steps)
    assert transcripts[0] == transcripts[1]


def _same_infos(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        if isinstance(value, dict):
            _same_infos(value, theirs[key])
        else:
            assert value.dtype == theirs[key].dtype, key
            assert value.tolist() == theirs[key].tolist(), key


@pytest.mark.parametrize("autoreset", ["NextStep", "SameStep", "Disabled"])
def test_matches_gymnasium_sync_vector_env(autoreset: str) -> None:
    """Gymnasium's own SyncVectorEnv over the same sub-envs is the reference transcript."""
    mode = gymnasium.vector.AutoresetMode(autoreset)
    fns = [lambda i=i: CountEnv(length=2 + i % 3, tag=f"e{i}") for i in range(4)]
    ours = SyncVectorEnv(fns, autoreset_mode=mode)
    reference = gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    rng = random.Random(2)
    try:
        a, b = ours.reset(seed=7), reference.reset(seed=7)
        assert a[0] == b[0]
        _same_infos(a[1], b[1])
        for _ in range(15):
            actions = [rng.choice(["a", "bb", "ccc"]) for _ in range(4)]
            if mode is gymnasium.vector.AutoresetMode.DISABLED and ours._autoreset_envs.any():
                mask = ours._autoreset_envs.copy()
                a, b = ours.reset(options={"reset_mask": mask}), reference.reset(options={"reset_mask": mask})
                assert a[0] == b[0]
                _same_infos(a[1], b[1])
            got, want = ours.step(actions), reference.step(actions)
            assert got[0] == want[0]
            for x, y in zip(got[1:4], want[1:4], strict=True):
                assert x.dtype == y.dtype and x.tolist() == y.tolist()
            _same_infos(got[4], want[4])
    finally:
        ours.close()
        reference.close()


def test_factories_must_return_envs(mode: str) -> None:
    fns = [lambda: CountEnv(), lambda: "not an env"]
    vec = SyncVectorEnv if mode == "sync" else AsyncVectorEnv
    with pytest.raises(
        InvalidArgument, match=r"sub-env 1: a factory returned str, which has no reset or step\(\) method"
    ):
        vec(fns)


def test_gymnasium_vector_wrappers_work(mode: str) -> None:
    with make(mode, num_envs=2, length=2) as envs:
        wrapped = gymnasium.wrappers.vector.RecordEpisodeStatistics(envs)
        wrapped.reset(seed=0)
        wrapped.step(["ab", "ab"])
        _, _, terminated, _, infos = wrapped.step(["ab", "ab"])
        assert terminated.tolist() == [True, False]
        assert infos["_episode"].tolist() == [True, False]
        assert infos["episode"]["r"][0] == 4.0 and infos["episode"]["l"][0] == 2
        wrapped.close()
        assert envs.closed


def test_failing_call_names_the_sub_env_and_keeps_the_env_open(mode: str) -> None:
    with make(mode, num_envs=3) as envs:
        envs.reset(seed=0)
        with pytest.raises(SubEnvError, match=r"sub-env 0 raised AttributeError: .*'no_such_thing'"):
            envs.call("no_such_thing")
        assert not envs.closed
        assert envs.get_attr("tag") == ("e0", "e1", "e2")


def test_the_lowest_failing_index_is_reported_in_both_modes(mode: str) -> None:
    envs = make(mode, workers=2, num_envs=4)
    envs.reset(seed=0)
    with pytest.raises(SubEnvError, match="sub-env 1 raised RuntimeError") as caught:
        envs.step(["a", "crash", "a", "crash"])
    assert caught.value.env_index == 1
    assert envs.closed


def test_none_actions_reach_the_sub_env_like_in_gem(mode: str) -> None:
    """GEM's vector envs hand ``None`` to the env, whose answer is a format error (-0.1, episode over)."""
    import rock_env as rock

    with rock.make_vec("game:Sokoban-v0-easy", 2, mode=mode) as envs:
        envs.reset(seed=3)
        _, rewards, terminations, _, _ = envs.step([None, "\\boxed{up}"])  # type: ignore[list-item]
        assert rewards.tolist()[0] == -0.1 and terminations.tolist() == [True, False]
        assert not envs.closed
