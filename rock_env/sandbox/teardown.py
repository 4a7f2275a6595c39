"""Asynchronous teardown: ``stop()`` makes a sandbox unusable and kills it, the rest finishes in the background.

Killing a namespace sandbox is one signal (and its state dir is removed at once), but waiting for
the kernel to tear the namespace down, reaping bwrap and removing the cgroups (busy until every
process has left) take milliseconds that the caller need not wait for. :func:`submit` runs such work on a small
thread pool; :func:`wait_all` waits for it (tests, benchmarks, and the interpreter's exit: the
pool's threads are joined at shutdown, and work submitted after that runs inline). If the owner
process is SIGKILLed meanwhile, ``rock-env sandbox gc`` removes the empty cgroups left behind.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

logger = logging.getLogger(__name__)

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rock-env-teardown")
_PENDING: set[Future[None]] = set()
_LOCK = threading.Lock()


def _run(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        logger.exception("background sandbox teardown failed; 'rock-env sandbox gc' will clean up")


def submit(fn: Callable[[], None]) -> None:
    """Run ``fn`` in the background (inline if the interpreter is shutting down)."""
    try:
        future = _POOL.submit(_run, fn)
    except RuntimeError:  # after interpreter shutdown began: no new threads
        _run(fn)
        return
    with _LOCK:
        _PENDING.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _LOCK:
        _PENDING.discard(future)


def wait_all(timeout: float | None = None) -> bool:
    """Wait until every submitted teardown has finished; False if some still run after ``timeout``."""
    with _LOCK:
        pending = set(_PENDING)
    if not pending:
        return True
    _, not_done = wait_futures(pending, timeout=timeout)
    return not not_done


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc`` to exit (blocking on a pidfd, no polling) and reap it."""
    if proc.returncode is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # already reaped, or no pidfd support: fall back to Popen.wait
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
    finally:
        os.close(fd)
    proc.wait()
    return True
