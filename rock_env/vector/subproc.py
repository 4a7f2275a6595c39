"""The env process of :class:`~rock_env.vector.AsyncVectorEnv`: a child process hosting sub-envs.

(Not a server worker: in rock-env "worker" means the server's worker only.) An env process
hosts a contiguous shard of the sub-envs. It is started with
``python -c "from rock_env.vector.subproc import main; main(FD)"`` (no fork, no re-import of the
parent's ``__main__``), talks over one socket (a :class:`multiprocessing.connection.Connection`)
and exits when told to, when the parent's end of the socket closes, or when its parent died
(a watchdog thread checks every second, also while a sub-env is busy).

Protocol (parent -> env process, env process -> parent), one reply per request:

* ``("init", {"sys_path", "factories" (cloudpickle bytes), "indices", "mode"})`` ->
  ``("ok", (observation_space, action_space))`` of the shard's first env (``None`` if not a Space);
* ``("reset", [(local_index, seed, options), ...])`` -> ``("ok", [(obs, info), ...])``;
* ``("step", (actions, needs_reset))`` -> ``("ok", [(obs, reward, terminated, truncated, info, final), ...])``;
* ``("call", (name, args, kwargs))`` -> ``("ok", [result, ...])`` (calls the attribute, or returns it);
* ``("set_attr", (name, values))`` -> ``("ok", None)``;
* ``("close", None)`` -> ``("ok", None)`` and the env process exits.

A failure is answered with ``("error", (env_index, type_name, message, traceback, is_rock_error))``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

#: Environment variable set in every env process: the pid of the parent (to find strays after a crash).
PARENT_ENV_VAR = "ROCK_ENV_VECTOR_PARENT"

#: Seconds between the env process's checks that its parent is still alive.
ORPHAN_CHECK_INTERVAL = 1.0


def _error_reply(env_index: int | None, exc: BaseException) -> tuple[str, tuple[Any, ...]]:
    from rock_env.errors import RockEnvError

    text = "".join(traceback.format_exception(exc))
    return "error", (env_index, type(exc).__name__, str(exc), text, isinstance(exc, RockEnvError))


class _Shard:
    """The envs of one env process and the commands on them."""

    def __init__(self) -> None:
        self.current: int | None = None
        self.indices: list[int] = []
        self.envs: list[Any] = []
        self.spaces: tuple[Any, Any] = (None, None)

    def init(self, payload: dict[str, Any]) -> None:
        """Build the shard's envs from the cloudpickled factories."""
        import cloudpickle
        from gymnasium import Space

        from rock_env.vector.autoreset import AutoresetMode, check_sub_env

        for entry in reversed(payload["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        self.indices = list(payload["indices"])
        self.current = self.indices[0]
        self.mode = AutoresetMode(payload["mode"])
        factories: list[Callable[[], Any]] = cloudpickle.loads(payload["factories"])
        for index, factory in zip(self.indices, factories, strict=True):
            self.current = index
            self.envs.append(check_sub_env(factory()))
        first = self.envs[0]
        obs_space = getattr(first, "observation_space", None)
        act_space = getattr(first, "action_space", None)
        self.spaces = (
            obs_space if isinstance(obs_space, Space) else None,
            act_space if isinstance(act_space, Space) else None,
        )

    def reset(self, requests: list[tuple[int, int | None, dict[str, Any] | None]]) -> list[tuple[str, dict[str, Any]]]:
        from rock_env.vector.autoreset import reset_sub_env

        out = []
        for local, seed, options in requests:
            self.current = self.indices[local]
            out.append(reset_sub_env(self.envs[local], seed, options))
        return out

    def step(self, payload: tuple[list[str], list[bool]]) -> list[tuple[Any, ...]]:
        from rock_env.vector.autoreset import step_sub_env

        actions, needs_reset = payload
        out = []
        for local, env in enumerate(self.envs):
            self.current = self.indices[local]
            out.append(tuple(step_sub_env(env, actions[local], self.mode, needs_reset[local])))
        return out

    def call(self, payload: tuple[str, tuple[Any, ...], dict[str, Any]]) -> list[Any]:
        name, args, kwargs = payload
        out = []
        for local, env in enumerate(self.envs):
            self.current = self.indices[local]
            attr = getattr(env, name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return out

    def set_attr(self, payload: tuple[str, list[Any]]) -> None:
        name, values = payload
        for local, env in enumerate(self.envs):
            self.current = self.indices[local]
            setattr(env, name, values[local])

    def close(self) -> None:
        from rock_env.vector.autoreset import close_sub_env

        for local, env in enumerate(self.envs):
            self.current = self.indices[local]
            close_sub_env(env)


def serve(conn: Connection) -> None:
    """Answer requests on ``conn`` until ``close`` or until the parent goes away."""
    shard: _Shard | None = None
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, OSError):
            break
        reply: tuple[str, Any]
        try:
            if command == "init":
                shard = _Shard()
                shard.init(payload)
                reply = ("ok", shard.spaces)
            elif command == "close" and shard is None:
                conn.send(("ok", None))
                break
            elif shard is None:
                raise RuntimeError(f"env process got {command!r} before init")
            elif command == "reset":
                reply = ("ok", shard.reset(payload))
            elif command == "step":
                reply = ("ok", shard.step(payload))
            elif command == "call":
                reply = ("ok", shard.call(payload))
            elif command == "set_attr":
                shard.set_attr(payload)
                reply = ("ok", None)
            elif command == "close":
                shard.close()
                conn.send(("ok", None))
                break
            else:
                raise RuntimeError(f"unknown env process command {command!r}")
        except BaseException as exc:  # report everything, the parent decides
            index = shard.current if shard is not None else None
            reply = _error_reply(index, exc)
            if command == "close" or isinstance(exc, (KeyboardInterrupt, SystemExit)):
                _send(conn, reply)
                break
        if not _send(conn, reply):
            break
    conn.close()


def _send(conn: Connection, reply: tuple[str, Any]) -> bool:
    """Send ``reply``; an unpicklable result becomes an error reply. False when the parent is gone."""
    try:
        conn.send(reply)
        return True
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return False
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        wrapped = RuntimeError(f"a sub-env returned a value that cannot be pickled to the parent process: {exc}")
        try:
            conn.send(_error_reply(None, wrapped))
            return True
        except OSError:
            return False


def _exit_when_orphaned(parent_pid: int, interval: float) -> None:
    """Exit the process once its parent is gone (covers a sub-env stuck in a long step)."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)


def main(fd: int) -> None:
    """Entry point of an env process: serve on the socket ``fd``.

    The env process exits when told to, when the parent's end of the socket closes, or (checked
    every second by a watchdog thread, even while a sub-env is busy) when the parent died.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it closes us
    parent_pid = os.getppid()
    os.environ.setdefault(PARENT_ENV_VAR, str(parent_pid))
    threading.Thread(
        target=_exit_when_orphaned, args=(parent_pid, ORPHAN_CHECK_INTERVAL), name="orphan-watchdog", daemon=True
    ).start()
    serve(Connection(fd))
