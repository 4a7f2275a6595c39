"""AsyncVectorEnv: worker processes, sharding, failures and clean shutdown in every case."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rock_env.errors import (
    EnvClosed,
    InvalidAction,
    InvalidArgument,
    SubEnvError,
    VectorWorkerDied,
)
from rock_env.vector import AsyncVectorEnv
from rock_env.vector.async_env import _shards, default_num_workers
from tests.vector.conftest import live_workers
from tests.vector.envs import BrokenEnv, CountEnv, make_count_env


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _make(num_envs: int = 4, num_workers: int = 2, **kwargs: object) -> AsyncVectorEnv:
    return AsyncVectorEnv(
        [lambda i=i: CountEnv(tag=f"e{i}") for i in range(num_envs)],
        num_workers=num_workers,
        **kwargs,  # type: ignore[arg-type]
    )


def test_shards_are_contiguous_and_balanced() -> None:
    assert _shards(5, 2) == [[0, 1, 2], [3, 4]]
    assert _shards(3, 3) == [[0], [1], [2]]
    assert sum(len(s) for s in _shards(64, 7)) == 64
    assert default_num_workers(1) == 1
    assert 1 <= default_num_workers(1000) <= (os.cpu_count() or 1)


def test_envs_live_in_worker_processes_and_close_stops_them(tmp_path: Path) -> None:
    envs = AsyncVectorEnv([lambda i=i: CountEnv(tag=f"e{i}", close_dir=str(tmp_path)) for i in range(5)], num_workers=2)
    pids = envs.worker_pids
    assert envs.num_workers == 2 and len(set(pids)) == 2 and os.getpid() not in pids
    envs.reset(seed=0)
    assert sorted(set(envs.call("close_dir"))) == [str(tmp_path)]
    envs.close()
    assert not any(_alive(pid) for pid in pids)
    assert len(list(tmp_path.glob("closed-*"))) == 5  # every sub-env's close() ran in its worker


def test_factories_by_reference_and_picklable_failures() -> None:
    with AsyncVectorEnv([make_count_env] * 2, num_workers=1) as envs:
        assert len(envs.reset()[0]) == 2
    lock = threading.Lock()
    with pytest.raises(InvalidArgument, match="cloudpickle"):
        AsyncVectorEnv([lambda: (lock, CountEnv())[1]])  # a lock cannot be pickled
    with pytest.raises(InvalidArgument, match="num_workers"):
        AsyncVectorEnv([make_count_env], num_workers=0)
    with pytest.raises(InvalidArgument, match="at least one"):
        AsyncVectorEnv([])


def test_a_sub_env_that_raises_names_its_index_and_closes_everything() -> None:
    envs = _make(num_envs=4, num_workers=2)
    pids = envs.worker_pids
    envs.reset(seed=0)
    with pytest.raises(SubEnvError, match=r"sub-env 3 raised RuntimeError: boom") as caught:
        envs.step(["a", "a", "a", "crash"])
    assert caught.value.env_index == 3 and caught.value.error_type == "RuntimeError"
    assert "envs.py" in (caught.value.remote_traceback or "")
    assert envs.closed and not any(_alive(pid) for pid in pids)


def test_after_a_sub_env_error_every_reachable_sub_env_is_closed(tmp_path: Path) -> None:
    envs = AsyncVectorEnv([lambda i=i: CountEnv(tag=f"e{i}", close_dir=str(tmp_path)) for i in range(4)], num_workers=2)
    envs.reset(seed=0)
    with pytest.raises(SubEnvError):
        envs.step(["a", "crash", "a", "a"])
    assert sorted(p.name.split("-")[1] for p in tmp_path.glob("closed-*")) == ["e0", "e1", "e2", "e3"]


def test_a_rock_env_error_in_a_sub_env_keeps_its_class() -> None:
    envs = _make(num_envs=3, num_workers=3)
    envs.reset(seed=0)
    with pytest.raises(InvalidAction, match=r"sub-env 1: this env refuses") as caught:
        envs.step(["a", "bad", "a"])
    assert caught.value.env_index == 1  # type: ignore[attr-defined]
    assert envs.closed


def test_an_unpicklable_result_is_a_typed_error() -> None:
    envs = _make(num_envs=2, num_workers=1)
    envs.reset(seed=0)
    with pytest.raises(SubEnvError, match="cannot be pickled"):
        envs.step(["a", "lock"])
    assert envs.closed


def test_a_failing_constructor_is_reported_and_workers_are_cleaned_up() -> None:
    fns = [make_count_env, make_count_env, BrokenEnv]
    with pytest.raises(SubEnvError, match=r"sub-env 2 raised RuntimeError: cannot build this env"):
        AsyncVectorEnv(fns, num_workers=2)  # type: ignore[list-item]
    assert live_workers() == []


def test_a_dying_worker_raises_vector_worker_died() -> None:
    envs = _make(num_envs=4, num_workers=2)
    pids = envs.worker_pids
    envs.reset(seed=0)
    with pytest.raises(VectorWorkerDied, match=r"sub-envs 0\.\.1 .*exited unexpectedly") as caught:
        envs.step(["die", "a", "a", "a"])
    assert caught.value.env_indices == (0, 1) and caught.value.exitcode == 3
    assert envs.closed and not any(_alive(pid) for pid in pids)


def test_a_killed_worker_is_detected_on_the_next_call() -> None:
    envs = _make(num_envs=2, num_workers=2)
    envs.reset(seed=0)
    victim = envs.worker_pids[1]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(VectorWorkerDied, match=r"sub-envs 1 ") as caught:
        envs.step(["a", "a"])
    assert caught.value.exitcode == -signal.SIGKILL
    assert envs.closed


def test_a_hung_worker_times_out_and_is_killed() -> None:
    envs = _make(num_envs=2, num_workers=2)
    pids = envs.worker_pids
    envs.reset(seed=0)
    envs.timeout = 2.0  # set after the reset, so that a slow, busy host cannot trip it there
    started = time.monotonic()
    with pytest.raises(VectorWorkerDied, match=r"did not answer within timeout=2\.0 s"):
        envs.step(["a", "sleep"])
    assert time.monotonic() - started < 20
    assert envs.closed and not any(_alive(pid) for pid in pids)


def test_keyboard_interrupt_during_a_step_closes_the_workers() -> None:
    envs = _make(num_envs=2, num_workers=2, close_timeout=0.5)
    pids = envs.worker_pids
    envs.reset(seed=0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            envs.step(["sleep", "a"])
    finally:
        timer.cancel()
    assert envs.closed and not any(_alive(pid) for pid in pids)


def test_a_forked_child_neither_uses_nor_stops_the_parents_workers() -> None:
    envs = _make(num_envs=2, num_workers=2)
    envs.reset(seed=0)
    pid = os.fork()
    if pid == 0:  # the child: using the env is refused, dropping it leaves the workers alone
        code = 0
        try:
            envs.step(["a", "a"])
            code = 1
        except EnvClosed:
            pass
        except BaseException:
            code = 2
        try:
            envs.close()
            del envs
            gc.collect()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _, rewards, _, _, _ = envs.step(["a", "bb"])  # the parent's workers still serve
    assert rewards.tolist() == [1.0, 2.0]
    envs.close()


def test_garbage_collection_stops_the_workers() -> None:
    envs = _make(num_envs=2, num_workers=2)
    envs.reset(seed=0)
    pids = envs.worker_pids
    del envs
    gc.collect()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_workers_exit_when_the_parent_is_killed(busy: bool) -> None:
    """Idle workers see their socket close; busy ones (a sub-env in a 60 s step) have a watchdog."""
    script = textwrap.dedent(
        f"""
        import time
        from rock_env.vector import AsyncVectorEnv
        from tests.vector.envs import make_count_env
        envs = AsyncVectorEnv([make_count_env] * 2, num_workers=2)
        envs.reset(seed=0)
        print(*envs.worker_pids, flush=True)
        envs.step(["sleep", "sleep"]) if {busy} else time.sleep(60)
        """
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        time.sleep(0.2)  # let the busy case enter its step
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
