"""``AsyncVectorEnv``: the sub-envs live in env processes (:mod:`.subproc`), stepped in parallel.

Sub-envs are split into ``num_workers`` contiguous shards (default: one env process per
available CPU, at most one per sub-env); each env process hosts one shard and steps its envs
one after the other, so a step costs one message round trip per process, not per env. (The
public knob keeps Gymnasium's and GEM's name ``num_workers``; inside, "worker" is reserved for
the server's proc, so these are "env processes".)

Env processes are started with ``subprocess`` running a fresh interpreter (no ``fork``: safe
with threads, nothing of the parent is inherited but one socket), so env factories are sent with
``cloudpickle`` and may be lambdas or closures defined in ``__main__`` or a notebook. Every env
process has ``ROCK_ENV_VECTOR_PARENT=<parent pid>`` in its environment so strays can be found.

Shutdown: ``close()`` asks each env process to close its sub-envs and exit, waits up to
``close_timeout`` seconds, then kills it. The same happens on garbage collection, at
interpreter exit, after an error in a sub-env and after ``KeyboardInterrupt`` (env processes
ignore SIGINT; the parent drives the shutdown). An env process that dies or stops answering
(``timeout``) raises :class:`~rock_env.errors.VectorWorkerDied` naming its sub-envs. An env
process whose parent died exits: an idle one sees its socket close, a busy one is stopped by
its watchdog thread.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, cast

import cloudpickle

from rock_env.errors import EnvClosed, InvalidArgument, RockEnvError, VectorWorkerDied
from rock_env.vector.autoreset import SubEnv, SubStep
from rock_env.vector.base import Seeds, VectorEnv, sub_env_error
from rock_env.vector.subproc import PARENT_ENV_VAR
from rock_env.vector.sync import _per_env

logger = logging.getLogger(__name__)

__all__ = ["AsyncVectorEnv", "default_num_workers"]

#: Seconds an env process may take to start and build its sub-envs when ``timeout`` is set.
START_TIMEOUT = 300.0

_PROCESS_CODE = "from rock_env.vector.subproc import main; main({fd})"


def default_num_workers(num_envs: int) -> int:
    """One env process per CPU this process may use, at most one per sub-env."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(num_envs, cpus))


def _shards(num_envs: int, num_processes: int) -> list[list[int]]:
    """Split ``range(num_envs)`` into ``num_processes`` contiguous, near-equal shards."""
    base, extra = divmod(num_envs, num_processes)
    shards, start = [], 0
    for w in range(num_processes):
        size = base + (1 if w < extra else 0)
        shards.append(list(range(start, start + size)))
        start += size
    return shards


@dataclass(eq=False)
class _EnvProcess:
    """One env process and the parent's end of its socket."""

    popen: subprocess.Popen[bytes]
    conn: Connection
    indices: list[int]
    inflight: int = 0
    dead: bool = False
    position: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {index: local for local, index in enumerate(self.indices)}


class _ProcessPool:
    """The env processes of one vector env; :meth:`shutdown` is idempotent and never raises.

    Only the process that started them drives them: in a forked child (a copy of the parent,
    e.g. a data-loader process) :meth:`shutdown` leaves them alone.
    """

    def __init__(self) -> None:
        self.processes: list[_EnvProcess] = []
        self.done = False
        self.owner_pid = os.getpid()

    def start(self, indices: list[int]) -> _EnvProcess:
        parent_sock, child_sock = socket.socketpair()
        try:
            fd = child_sock.fileno()
            env = {**os.environ, PARENT_ENV_VAR: str(os.getpid())}
            popen = subprocess.Popen(
                [sys.executable, "-c", _PROCESS_CODE.format(fd=fd)],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        proc = _EnvProcess(popen, Connection(parent_sock.detach()), indices)
        self.processes.append(proc)
        return proc

    def shutdown(self, graceful_timeout: float) -> None:
        """Ask the env processes to close their envs and exit; kill what is left after ``graceful_timeout``."""
        if self.done:
            return
        self.done = True
        if os.getpid() != self.owner_pid:  # a forked copy: the env processes belong to the parent
            return
        try:
            self._shutdown(graceful_timeout)
        except BaseException:
            self._kill_all()
            raise

    def _shutdown(self, graceful_timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, graceful_timeout)
        expected: dict[_EnvProcess, int] = {}
        if graceful_timeout > 0:
            for proc in self.processes:
                if proc.dead or proc.popen.poll() is not None:
                    continue
                try:
                    proc.conn.send(("close", None))
                except OSError:
                    continue
                expected[proc] = proc.inflight + 1
        for proc, count in expected.items():
            while count > 0:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0 or not proc.conn.poll(remaining):
                        break
                    status, payload = proc.conn.recv()
                except (EOFError, OSError):
                    break
                except Exception:  # an unreadable in-flight reply: keep draining
                    status, payload = "ok", None
                count -= 1
                if count == 0 and status == "error":
                    logger.warning("a sub-env raised while closing: %s", payload[2])
        for proc in self.processes:
            remaining = deadline - time.monotonic()
            try:
                proc.popen.wait(timeout=max(remaining, 0.0) if proc in expected else 0.0)
            except subprocess.TimeoutExpired:
                self._kill(proc)
            finally:
                proc.conn.close()

    @staticmethod
    def _kill(proc: _EnvProcess) -> None:
        if proc.popen.poll() is None:
            proc.popen.kill()
        try:
            proc.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
            logger.error("env process pid %d did not exit after SIGKILL", proc.popen.pid)

    def _kill_all(self) -> None:
        for proc in self.processes:
            self._kill(proc)
            proc.conn.close()


class AsyncVectorEnv(VectorEnv):
    """Runs ``len(env_fns)`` sub-envs in ``num_workers`` env processes, in parallel.

    Args:
        env_fns: one zero-argument factory per sub-env; sent with cloudpickle, so lambdas work.
        autoreset_mode: ``"next_step"`` (default), ``"same_step"``, ``"disabled"`` or a
            :class:`gymnasium.vector.AutoresetMode`.
        seed: seeds of the first ``reset()`` when it is called without one.
        num_workers: env processes (default: CPUs available, at most ``len(env_fns)``).
        timeout: seconds to wait for an env process's answer to one call (``None``: no limit); a
            late one is killed and :class:`~rock_env.errors.VectorWorkerDied` is raised. Starting
            the env processes may take up to ``max(timeout, START_TIMEOUT)``.
        close_timeout: seconds ``close()`` waits for the env processes to close their sub-envs
            before killing them.
        env_id: the id shown in ``repr`` and errors.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], SubEnv]],
        *,
        autoreset_mode: object = "next_step",
        seed: Seeds = None,
        num_workers: int | None = None,
        timeout: float | None = None,
        close_timeout: float = 10.0,
        env_id: str | None = None,
    ) -> None:
        from rock_env.vector.autoreset import parse_autoreset_mode

        self.closed = False
        fns = list(env_fns)
        if not fns:
            raise InvalidArgument("a vector env needs at least one sub-env: pass num_envs >= 1.")
        if num_workers is None:
            num_workers = default_num_workers(len(fns))
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise InvalidArgument(f"num_workers must be a positive int, got {num_workers!r}.")
        if timeout is not None and timeout <= 0:
            raise InvalidArgument(f"timeout must be positive seconds or None, got {timeout!r}.")
        mode = parse_autoreset_mode(autoreset_mode)
        self.timeout = timeout
        self.close_timeout = float(close_timeout)
        self._label = env_id or ""
        shards = _shards(len(fns), min(num_workers, len(fns)))
        try:
            payloads = [cloudpickle.dumps([fns[i] for i in shard]) for shard in shards]
        except Exception as exc:
            raise InvalidArgument(f"the env factories cannot be sent to env processes (cloudpickle): {exc}") from exc
        self._pool = _ProcessPool()
        self._finalizer = weakref.finalize(self, self._pool.shutdown, self.close_timeout)
        try:
            for shard in shards:
                self._pool.start(shard)
            messages = {
                proc: (
                    "init",
                    {"sys_path": list(sys.path), "factories": payload, "indices": shard, "mode": mode.value},
                )
                for proc, payload, shard in zip(self._pool.processes, payloads, shards, strict=True)
            }
            # starting takes imports: a generous limit of its own when a call timeout is set
            replies = self._request(messages, None if timeout is None else max(timeout, START_TIMEOUT))
        except BaseException:
            self._pool.shutdown(self.close_timeout)
            self.closed = True
            raise
        obs_space, act_space = replies[self._pool.processes[0]]
        try:
            self._init_vector(len(fns), mode, seed, obs_space, act_space, env_id)
        except BaseException:
            self._pool.shutdown(self.close_timeout)
            self.closed = True
            raise

    # -- plumbing ------------------------------------------------------------------------

    @property
    def num_workers(self) -> int:
        """The number of env processes."""
        return len(self._pool.processes)

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the env processes (for monitoring)."""
        return tuple(proc.popen.pid for proc in self._pool.processes)

    def _request(
        self, messages: dict[_EnvProcess, tuple[str, Any]], timeout: float | None = -1.0
    ) -> dict[_EnvProcess, Any]:
        """Send one request per env process and wait for every reply.

        A sub-env error is raised after all replies are in (so the env processes stay in step
        with the parent), choosing the lowest env index, as sync mode would. A dead or late one
        raises :class:`VectorWorkerDied` at once. ``timeout`` defaults to :attr:`timeout`.
        """
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        if os.getpid() != self._pool.owner_pid:
            raise EnvClosed(
                f"this AsyncVectorEnv belongs to process {self._pool.owner_pid}; a forked child cannot use it: "
                "make a new vector env in the child."
            )
        for proc, message in messages.items():
            try:
                proc.conn.send(message)
            except OSError as exc:
                proc.dead = True
                raise self._died(proc, f"cannot send to it ({exc})") from exc
            proc.inflight += 1
        pending = {proc.conn: proc for proc in messages}
        replies: dict[_EnvProcess, Any] = {}
        errors: list[tuple[float, RockEnvError]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(pending), timeout=remaining)
            if not ready:
                late = list(pending.values())
                for proc in late:
                    proc.dead = True
                    _ProcessPool._kill(proc)
                raise self._died(late[0], f"did not answer within timeout={timeout} s; it was killed")
            for ready_conn in ready:
                conn = cast(Connection, ready_conn)
                proc = pending.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError) as exc:
                    proc.dead = True
                    raise self._died(proc, "exited unexpectedly") from exc
                except Exception as exc:  # the reply arrived but cannot be unpickled here
                    proc.inflight -= 1
                    text = f"cannot read the reply of the env process hosting sub-envs {proc.indices}: {exc}"
                    errors.append((math.inf, sub_env_error(None, type(exc).__name__, text, None, False)))
                    continue
                proc.inflight -= 1
                if status == "error":
                    index, type_name, message, traceback_text, is_rock_error = payload
                    error = sub_env_error(index, type_name, message, traceback_text, is_rock_error, self._label)
                    errors.append((math.inf if index is None else index, error))
                else:
                    replies[proc] = payload
        if errors:
            raise min(errors, key=lambda item: item[0])[1]
        return replies

    def _call_all(self, messages: dict[_EnvProcess, tuple[str, Any]]) -> dict[_EnvProcess, Any]:
        """``_request`` for ``call``/``set_attr``: a sub-env error leaves the vector env open."""
        try:
            return self._request(messages)
        except VectorWorkerDied:
            self.close()
            raise
        except RockEnvError:
            raise
        except BaseException:
            self.close()
            raise

    def _died(self, proc: _EnvProcess, what: str) -> VectorWorkerDied:
        try:
            exitcode = proc.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            exitcode = None
        indices = tuple(proc.indices)
        span = f"{indices[0]}..{indices[-1]}" if len(indices) > 1 else str(indices[0])
        label = f" of {self._label}" if self._label else ""
        return VectorWorkerDied(
            f"the env process (pid {proc.popen.pid}, exit code {exitcode}) hosting sub-envs {span}{label} {what}. "
            "The vector env is closed; make a new one (and check the sub-envs' memory use and stderr).",
            env_indices=indices,
            exitcode=exitcode,
        )

    # -- VectorEnv hooks -----------------------------------------------------------------

    def _reset_envs(
        self, indices: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        wanted = dict(zip(indices, seeds, strict=True))
        messages: dict[_EnvProcess, tuple[str, Any]] = {}
        for proc in self._pool.processes:
            requests = [(proc.position[i], wanted[i], options) for i in proc.indices if i in wanted]
            if requests:
                messages[proc] = ("reset", requests)
        replies = self._request(messages)
        out: dict[int, tuple[str, dict[str, Any]]] = {}
        for proc, results in replies.items():
            chosen = [i for i in proc.indices if i in wanted]
            out.update(zip(chosen, results, strict=True))
        return [out[i] for i in indices]

    def _step_envs(self, actions: list[str | None], needs_reset: list[bool]) -> list[SubStep]:
        messages: dict[_EnvProcess, tuple[str, Any]] = {}
        for proc in self._pool.processes:
            lo, hi = proc.indices[0], proc.indices[-1] + 1
            messages[proc] = ("step", (actions[lo:hi], needs_reset[lo:hi]))
        replies = self._request(messages)
        out: list[SubStep] = []
        for proc in self._pool.processes:
            out.extend(SubStep(*result) for result in replies[proc])
        return out

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` on every sub-env (or read the attribute if it is not callable)."""
        self._check_open("call")
        replies = self._call_all({w: ("call", (name, args, kwargs)) for w in self._pool.processes})
        return tuple(result for proc in self._pool.processes for result in replies[proc])

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | object) -> None:
        """Set attribute ``name`` on every sub-env: one value each (list/tuple), or one value for all."""
        self._check_open("set_attr")
        per_env = _per_env(values, self.num_envs)
        messages: dict[_EnvProcess, tuple[str, Any]] = {
            w: ("set_attr", (name, [per_env[i] for i in w.indices])) for w in self._pool.processes
        }
        self._call_all(messages)

    def close_extras(self, terminate: bool = False) -> None:
        """Close the sub-envs in their env processes and stop those (``terminate``: kill them now)."""
        self._pool.shutdown(0.0 if terminate else self.close_timeout)
        self._finalizer.detach()
