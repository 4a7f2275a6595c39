"""``AsyncVectorEnv``: the sub-envs live in worker processes, stepped in parallel.

Sub-envs are split into ``num_workers`` contiguous shards (default: one worker per available
CPU, at most one per sub-env); each worker process hosts one shard and steps its envs one after
the other, so a step costs one message round trip per worker, not per env.

Workers are started with ``subprocess`` running a fresh interpreter (no ``fork``: safe with
threads, nothing of the parent is inherited but one socket), so env factories are sent with
``cloudpickle`` and may be lambdas or closures defined in ``__main__`` or a notebook. Every worker
has ``ROCK_ENV_VECTOR_WORKER=<parent pid>`` in its environment so strays can be found.

Shutdown: ``close()`` asks each worker to close its sub-envs and exit, waits up to
``close_timeout`` seconds, then kills it. The same happens on garbage collection, at
interpreter exit, after an error in a sub-env and after ``KeyboardInterrupt`` (workers ignore
SIGINT; the parent drives the shutdown). A worker that dies or stops answering (``timeout``)
raises :class:`~rock_env.errors.VectorWorkerDied` naming its sub-envs. A worker whose parent
died exits: an idle one sees its socket close, a busy one is stopped by its watchdog thread.
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
from rock_env.vector._worker import WORKER_ENV_VAR
from rock_env.vector.autoreset import SubEnv, SubStep
from rock_env.vector.base import Seeds, VectorEnv, sub_env_error
from rock_env.vector.sync import _per_env

logger = logging.getLogger(__name__)

__all__ = ["AsyncVectorEnv", "default_num_workers"]

#: Seconds a worker may take to start and build its sub-envs when ``timeout`` is set.
START_TIMEOUT = 300.0

_WORKER_CODE = "from rock_env.vector._worker import main; main({fd})"


def default_num_workers(num_envs: int) -> int:
    """One worker per CPU this process may use, at most one per sub-env."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(num_envs, cpus))


def _shards(num_envs: int, num_workers: int) -> list[list[int]]:
    """Split ``range(num_envs)`` into ``num_workers`` contiguous, near-equal shards."""
    base, extra = divmod(num_envs, num_workers)
    shards, start = [], 0
    for w in range(num_workers):
        size = base + (1 if w < extra else 0)
        shards.append(list(range(start, start + size)))
        start += size
    return shards


@dataclass(eq=False)
class _Worker:
    """One worker process and the parent's end of its socket."""

    proc: subprocess.Popen[bytes]
    conn: Connection
    indices: list[int]
    inflight: int = 0
    dead: bool = False
    position: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {index: local for local, index in enumerate(self.indices)}


class _WorkerPool:
    """The worker processes of one vector env; :meth:`shutdown` is idempotent and never raises.

    Only the process that started the workers drives them: in a forked child (a copy of the
    parent, e.g. a data-loader worker) :meth:`shutdown` leaves them alone.
    """

    def __init__(self) -> None:
        self.workers: list[_Worker] = []
        self.done = False
        self.owner_pid = os.getpid()

    def start(self, indices: list[int]) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        try:
            fd = child_sock.fileno()
            env = {**os.environ, WORKER_ENV_VAR: str(os.getpid())}
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE.format(fd=fd)],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        worker = _Worker(proc, Connection(parent_sock.detach()), indices)
        self.workers.append(worker)
        return worker

    def shutdown(self, graceful_timeout: float) -> None:
        """Ask workers to close their envs and exit; kill whatever is left after ``graceful_timeout``."""
        if self.done:
            return
        self.done = True
        if os.getpid() != self.owner_pid:  # a forked copy: the workers belong to the parent
            return
        try:
            self._shutdown(graceful_timeout)
        except BaseException:
            self._kill_all()
            raise

    def _shutdown(self, graceful_timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, graceful_timeout)
        expected: dict[_Worker, int] = {}
        if graceful_timeout > 0:
            for worker in self.workers:
                if worker.dead or worker.proc.poll() is not None:
                    continue
                try:
                    worker.conn.send(("close", None))
                except OSError:
                    continue
                expected[worker] = worker.inflight + 1
        for worker, count in expected.items():
            while count > 0:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0 or not worker.conn.poll(remaining):
                        break
                    status, payload = worker.conn.recv()
                except (EOFError, OSError):
                    break
                except Exception:  # an unreadable in-flight reply: keep draining
                    status, payload = "ok", None
                count -= 1
                if count == 0 and status == "error":
                    logger.warning("a sub-env raised while closing: %s", payload[2])
        for worker in self.workers:
            remaining = deadline - time.monotonic()
            try:
                worker.proc.wait(timeout=max(remaining, 0.0) if worker in expected else 0.0)
            except subprocess.TimeoutExpired:
                self._kill(worker)
            finally:
                worker.conn.close()

    @staticmethod
    def _kill(worker: _Worker) -> None:
        if worker.proc.poll() is None:
            worker.proc.kill()
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
            logger.error("worker pid %d did not exit after SIGKILL", worker.proc.pid)

    def _kill_all(self) -> None:
        for worker in self.workers:
            self._kill(worker)
            worker.conn.close()


class AsyncVectorEnv(VectorEnv):
    """Runs ``len(env_fns)`` sub-envs in ``num_workers`` worker processes, in parallel.

    Args:
        env_fns: one zero-argument factory per sub-env; sent with cloudpickle, so lambdas work.
        autoreset_mode: ``"next_step"`` (default), ``"same_step"``, ``"disabled"`` or a
            :class:`gymnasium.vector.AutoresetMode`.
        seed: seeds of the first ``reset()`` when it is called without one.
        num_workers: worker processes (default: CPUs available, at most ``len(env_fns)``).
        timeout: seconds to wait for a worker's answer to one call (``None``: no limit); a late
            worker is killed and :class:`~rock_env.errors.VectorWorkerDied` is raised. Starting
            the workers may take up to ``max(timeout, START_TIMEOUT)``.
        close_timeout: seconds ``close()`` waits for workers to close their sub-envs before killing them.
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
            raise InvalidArgument(f"the env factories cannot be sent to worker processes (cloudpickle): {exc}") from exc
        self._pool = _WorkerPool()
        self._finalizer = weakref.finalize(self, self._pool.shutdown, self.close_timeout)
        try:
            for shard in shards:
                self._pool.start(shard)
            messages = {
                worker: (
                    "init",
                    {"sys_path": list(sys.path), "factories": payload, "indices": shard, "mode": mode.value},
                )
                for worker, payload, shard in zip(self._pool.workers, payloads, shards, strict=True)
            }
            # starting takes imports: a generous limit of its own when a call timeout is set
            replies = self._request(messages, None if timeout is None else max(timeout, START_TIMEOUT))
        except BaseException:
            self._pool.shutdown(self.close_timeout)
            self.closed = True
            raise
        obs_space, act_space = replies[self._pool.workers[0]]
        try:
            self._init_vector(len(fns), mode, seed, obs_space, act_space, env_id)
        except BaseException:
            self._pool.shutdown(self.close_timeout)
            self.closed = True
            raise

    # -- plumbing ------------------------------------------------------------------------

    @property
    def num_workers(self) -> int:
        """The number of worker processes."""
        return len(self._pool.workers)

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the workers (for monitoring)."""
        return tuple(worker.proc.pid for worker in self._pool.workers)

    def _request(self, messages: dict[_Worker, tuple[str, Any]], timeout: float | None = -1.0) -> dict[_Worker, Any]:
        """Send one request per worker and wait for every reply.

        A sub-env error is raised after all replies are in (so the workers stay in step with
        the parent), choosing the lowest env index, as sync mode would. A dead or late worker
        raises :class:`VectorWorkerDied` at once. ``timeout`` defaults to :attr:`timeout`.
        """
        if timeout is not None and timeout < 0:
            timeout = self.timeout
        if os.getpid() != self._pool.owner_pid:
            raise EnvClosed(
                f"this AsyncVectorEnv belongs to process {self._pool.owner_pid}; a forked child cannot use it: "
                "make a new vector env in the child."
            )
        for worker, message in messages.items():
            try:
                worker.conn.send(message)
            except OSError as exc:
                worker.dead = True
                raise self._died(worker, f"cannot send to it ({exc})") from exc
            worker.inflight += 1
        pending = {worker.conn: worker for worker in messages}
        replies: dict[_Worker, Any] = {}
        errors: list[tuple[float, RockEnvError]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(pending), timeout=remaining)
            if not ready:
                late = list(pending.values())
                for worker in late:
                    worker.dead = True
                    _WorkerPool._kill(worker)
                raise self._died(late[0], f"did not answer within timeout={timeout} s; it was killed")
            for ready_conn in ready:
                conn = cast(Connection, ready_conn)
                worker = pending.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError) as exc:
                    worker.dead = True
                    raise self._died(worker, "exited unexpectedly") from exc
                except Exception as exc:  # the reply arrived but cannot be unpickled here
                    worker.inflight -= 1
                    text = f"cannot read the reply of the worker hosting sub-envs {worker.indices}: {exc}"
                    errors.append((math.inf, sub_env_error(None, type(exc).__name__, text, None, False)))
                    continue
                worker.inflight -= 1
                if status == "error":
                    index, type_name, message, traceback_text, is_rock_error = payload
                    error = sub_env_error(index, type_name, message, traceback_text, is_rock_error, self._label)
                    errors.append((math.inf if index is None else index, error))
                else:
                    replies[worker] = payload
        if errors:
            raise min(errors, key=lambda item: item[0])[1]
        return replies

    def _call_workers(self, messages: dict[_Worker, tuple[str, Any]]) -> dict[_Worker, Any]:
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

    def _died(self, worker: _Worker, what: str) -> VectorWorkerDied:
        try:
            exitcode = worker.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            exitcode = None
        indices = tuple(worker.indices)
        span = f"{indices[0]}..{indices[-1]}" if len(indices) > 1 else str(indices[0])
        label = f" of {self._label}" if self._label else ""
        return VectorWorkerDied(
            f"the worker process (pid {worker.proc.pid}, exit code {exitcode}) hosting sub-envs {span}{label} {what}. "
            "The vector env is closed; make a new one (and check the sub-envs' memory use and stderr).",
            env_indices=indices,
            exitcode=exitcode,
        )

    # -- VectorEnv hooks -----------------------------------------------------------------

    def _reset_envs(
        self, indices: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        wanted = dict(zip(indices, seeds, strict=True))
        messages: dict[_Worker, tuple[str, Any]] = {}
        for worker in self._pool.workers:
            requests = [(worker.position[i], wanted[i], options) for i in worker.indices if i in wanted]
            if requests:
                messages[worker] = ("reset", requests)
        replies = self._request(messages)
        out: dict[int, tuple[str, dict[str, Any]]] = {}
        for worker, results in replies.items():
            chosen = [i for i in worker.indices if i in wanted]
            out.update(zip(chosen, results, strict=True))
        return [out[i] for i in indices]

    def _step_envs(self, actions: list[str | None], needs_reset: list[bool]) -> list[SubStep]:
        messages: dict[_Worker, tuple[str, Any]] = {}
        for worker in self._pool.workers:
            lo, hi = worker.indices[0], worker.indices[-1] + 1
            messages[worker] = ("step", (actions[lo:hi], needs_reset[lo:hi]))
        replies = self._request(messages)
        out: list[SubStep] = []
        for worker in self._pool.workers:
            out.extend(SubStep(*result) for result in replies[worker])
        return out

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` on every sub-env (or read the attribute if it is not callable)."""
        self._check_open("call")
        replies = self._call_workers({w: ("call", (name, args, kwargs)) for w in self._pool.workers})
        return tuple(result for worker in self._pool.workers for result in replies[worker])

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | object) -> None:
        """Set attribute ``name`` on every sub-env: one value each (list/tuple), or one value for all."""
        self._check_open("set_attr")
        per_env = _per_env(values, self.num_envs)
        messages: dict[_Worker, tuple[str, Any]] = {
            w: ("set_attr", (name, [per_env[i] for i in w.indices])) for w in self._pool.workers
        }
        self._call_workers(messages)

    def close_extras(self, terminate: bool = False) -> None:
        """Close the sub-envs in their workers and stop the workers (``terminate``: kill them now)."""
        self._pool.shutdown(0.0 if terminate else self.close_timeout)
        self._finalizer.detach()
