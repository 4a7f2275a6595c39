"""The namespace runtime: bubblewrap in an unprivileged user namespace, with new pid, ipc, uts, mount (and network) namespaces.

Who runs what: root inside a sandbox is an unprivileged uid outside. As root, rock-env gives each
sandbox a host uid of its own (:mod:`rock_env.sandbox.uids`) and runs bubblewrap under it
(``setpriv --reuid``); bubblewrap makes a user namespace that maps uid 0 inside to that uid and
nothing else, and forbids nested user namespaces. Every process inside has no capabilities (an
empty bounding set, ``no_new_privs``), so root inside owns nothing of the host: global ``/proc``
knobs (``/proc/sys``, ``/proc/sysrq-trigger``) are read-only to it, and it cannot mount, load
modules, ptrace or signal anything outside.

Layout of a sandbox: a read-only root made of the host's system directories (``/usr``,
``/bin``, ``/lib*``, ``/sbin``, ``/etc`` with secrets masked) or of a rootfs (``config.image``:
an image built by ``rock-env image build-base``, or a rootfs directory or tarball under a
configured image root, see :func:`resolve_rootfs`); ``/proc``; a minimal read-only ``/dev``
(null, zero, full, random, urandom, tty, pts); and the writable places, each a size-limited
tmpfs made inside the sandbox's mount namespace (the host's mount table does not grow with
every sandbox): ``/workspace`` and ``/tmp`` of ``disk`` each, ``/dev/shm`` of at most
:data:`SHM_SIZE` (and never more than ``disk``), and ``/var/tmp`` as a link into ``/tmp``. The host
reaches them through ``/proc/<init pid>/root`` with directory fds and confined, symlink-safe
resolution (see :mod:`rock_env.sandbox.confined`); files the SDK writes there are owned by the
sandbox's uid. No network unless ``network=True`` (then the host's).

Processes: the namespace's pid 1 is a tiny keeper shell (``--as-pid-1``) that reaps orphans and
never exits: no process inside can kill it (the kernel ignores signals to a pid namespace's
init from inside it), so ``kill -9 -1`` or a fork bomb never takes the sandbox down. Sessions and
one-shot commands enter the namespaces with ``nsenter`` (as uid 0 inside) and drop every
capability with ``setpriv``; each session runs in a child pids cgroup of its own, so that what a
command left behind (a fork bomb's orphans) can be killed through the cgroup. bwrap's init is
moved into the sandbox's cgroups while bwrap sets up the mounts, and :meth:`NamespaceRuntime.start`
returns once the keeper reports that the mounts are up. Stopping kills pid 1, which kills
everything inside; reaping bwrap and removing the cgroups finish in the background
(:mod:`rock_env.sandbox.teardown`).

The package is split by job: :mod:`.rootfs` (the image resolved to a rootfs, secrets to mask, the
execute-only shell), :mod:`.bwrap` (bubblewrap's command line: namespaces, mounts, the keeper; the
probe of ``runtime="auto"``), :mod:`.processes` (processes in child pids cgroups, the pids guard)
and :mod:`.runtime` (:class:`NamespaceRuntime`: start, stop, files, processes).
"""

from __future__ import annotations

from rock_env.sandbox.runtimes.namespace.bwrap import KEEPER, READY, SHELL_PATH, SHM_SIZE
from rock_env.sandbox.runtimes.namespace.processes import GUARD_TICK, GroupPipe, PidsGuard
from rock_env.sandbox.runtimes.namespace.rootfs import IMAGE_ROOTS_ENV, exec_only_shell, image_roots, resolve_rootfs
from rock_env.sandbox.runtimes.namespace.runtime import START_TIMEOUT, NamespaceRuntime

__all__ = [
    "GUARD_TICK",
    "IMAGE_ROOTS_ENV",
    "KEEPER",
    "READY",
    "SHELL_PATH",
    "SHM_SIZE",
    "START_TIMEOUT",
    "GroupPipe",
    "NamespaceRuntime",
    "PidsGuard",
    "exec_only_shell",
    "image_roots",
    "resolve_rootfs",
]
