"""What runs inside a docker sandbox on rock-env's behalf: the keeper (the container's pid 1) and the shell wrappers.

:data:`KEEPER_SCRIPT` is the container's init, started by :data:`INIT_WRAPPER`;
:data:`SESSION_WRAPPER` starts a session's shell non-dumpable; :data:`EXEC_SCRIPT` runs a one-shot
``docker exec`` process; :func:`spare_start_line` is the line that turns the keeper's spare shell
into the default session's bash.
"""

from __future__ import annotations

import os
import select
import shlex
import stat

# The container's init (pid 1, bash or sh: nothing inside can signal it, so `kill -9 -1` leaves it):
# - opens a fifo (made and unlinked at once, before anything else runs in the container) that
#   feeds the spare shell: it keeps the fifo open (read-write) as its fd 5, so the shell never reads
#   EOF, and the owner writes the shell's input straight into it through ``/proc/<init>/fd/5``
#   (nothing in the container relays it, so no process killed from inside can swallow a command
#   line on its way; an image without mkfifo gets no spare shell: every session is a docker exec);
# - reads a random token and a nonce from the first line of its stdin (never in its argv, env or a file);
# - a watchdog in the background kills every process of the container when the ttl ($1) has
#   passed (the init then exits and the container is removed); it is replaced by a fresh one
#   (the old one and its sleep killed) whenever the init wakes up in phase 2, so a watchdog killed
#   from inside is back as soon as the stdin watcher it was killed with is;
# - phase 1: a watcher `cat` reads the container's stdin (nothing more comes after the first line)
#   and, when it ends, kills every process of the container. The owner keeps the attach socket
#   open until stop() and the container is created with StdinOnce, so stdin ends exactly when the
#   owner closes it or dies (even by SIGKILL, even while a command runs). The spare shell reads the
#   fifo in the foreground (sh starts background commands with SIGINT and SIGQUIT ignored, and the
#   session would inherit that). It prints its pid (after \036 + the nonce) and waits, in the
#   keeper's session (so that freeing a full sandbox spares it), for its start line, which makes it
#   the session's bash in a session of its own. When it ends, its exit code is printed after
#   \036 + the token;
# - phase 2, once the spare shell or its helper is gone (the shell exited, or everything was killed
#   from inside): the watcher is the init's foreground `cat`, restarted whenever it is killed. The
#   init always waits in the foreground: it reaps orphans.
KEEPER_SCRIPT = r"""exec 3<&0 </dev/null
f=/dev/shm/.rock-env-keeper
rm -f "$f"
if mkfifo -m 600 "$f" 2>/dev/null && command exec 5<>"$f" 2>/dev/null; then q=1; else q=; exec 5>/dev/null; fi
rm -f "$f"
IFS=' ' read -r t r <&3 || exit 0
e=
if [ "$1" != infinity ]; then read -r u _ </proc/uptime; e=$(( ${u%.*} + $1 )); fi
w=
dog() {
  [ -n "$e" ] || return 0
  read -r u _ </proc/uptime
  l=$(( e - ${u%.*} ))
  if [ "$l" -le 0 ]; then kill -KILL -1; exit 0; fi
  if [ -n "$w" ]; then c=; read -r c _ 2>/dev/null <"/proc/$w/task/$w/children"; kill -KILL "$w" $c 2>/dev/null; fi
  (sleep "$l"; kill -KILL -1) >/dev/null 2>&1 3<&- 5<&- &
  w=$!
}
dog
s='printf "\036%s:spare:%s\n" "$0" "$$"; exec /bin/sh'
if [ -n "$q" ]; then
  { cat <&3 >/dev/null && kill -KILL -1; } 2>/dev/null &
  p=$!
  (/bin/sh -c "$s" "$r" 2>&1; printf '\036%s:exit:%d\n' "$t" "$?") <&5 3<&- 5<&-
  kill -KILL "$p" 2>/dev/null
else
  printf '\036%s:spare:none\n' "$r"
fi
t=
while :; do
  dog
  cat <&3 >/dev/null 2>/dev/null && break
done
kill -KILL -1
"""
# A session's shell starts with its effective uid set away from root (``setpriv --euid=1``, if the
# image has setpriv); bash at once sets it back to its real uid 0, which gives back every capability
# but leaves the process non-dumpable (a change of effective uid does): no other process of the
# container, though root with DAC_OVERRIDE, may then ptrace the shell or open its /proc/PID/{mem,fd,
# environ}, so the end markers of the commands it is sent cannot be read from inside (no SYS_PTRACE).
SESSION_WRAPPER = (
    "/bin/sh",
    "-c",
    'command -v setpriv >/dev/null 2>&1 && exec setpriv --euid=1 -- "$@"; exec "$@"',
    "rock-env-shell",
)
# The container's init runs the keeper with its effective uid away from root too (real uid 0 stays,
# so it can still signal every process; ``-p`` keeps it so; bash where the image has it, since bash
# retries a fork at the pids limit where dash, as pid 1, would exit and end the container): it and what it runs (the stdin relay
# `cat`) are non-dumpable, so the
# command lines that pass through them cannot be read from their memory or stolen from their fds.
INIT_WRAPPER = (
    'k=$1; shift; s=/bin/sh; command -v bash >/dev/null 2>&1 && s="bash --norc --noprofile"; '
    'command -v setpriv >/dev/null 2>&1 && exec setpriv --euid=1 -- $s -p -c "$k" rock-env-init "$@"; '
    'exec $s -c "$k" rock-env-init "$@"'
)
# One-shot processes through `docker exec`: cd, then exec the argv with exactly the given env.
EXEC_SCRIPT = 'cd -- "$1" || exit 126; shift; exec env -i "$@" 2>&1'


def init_entrypoint() -> list[str]:
    """The container's entrypoint: :data:`INIT_WRAPPER` running :data:`KEEPER_SCRIPT` (its argument: the ttl)."""
    return ["/bin/sh", "-c", INIT_WRAPPER, "rock-env-init", KEEPER_SCRIPT]


def spare_start_line(workdir: str, env: dict[str, str], argv: list[str], ready_token: str) -> bytes:
    """The line sent to the spare shell: cd to ``workdir``, say ready (after ``ready_token``), exec ``argv`` with ``env``.

    ``argv`` runs in a session of its own (``setsid``) with exactly ``env`` (``env -i``).
    """
    pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    command = " ".join(shlex.quote(a) for a in argv)
    return (
        f"cd -- {shlex.quote(workdir)} || exit 126; "
        f"printf '\\036%s:ready:\\n' {ready_token}; "
        f"exec setsid env -i {pairs} {command} 2>&1\n"
    ).encode()


#: the fd of the container's init that holds the keeper's fifo (the spare shell's stdin)
FIFO_FD = 5


def open_keeper_fifo(init_pid: int, shell_pid: int) -> int | None:
    """A write fd (non-blocking) on the keeper's fifo, checked to be the stdin of host process ``shell_pid``.

    Written from the host, the spare shell's input passes through nothing in the container: a relay
    process killed from inside (``kill -9 -1``) could still take a command line off a pipe before
    it dies, and the line would be lost. None if it cannot be opened or is not the shell's stdin.
    """
    try:
        fd = os.open(f"/proc/{init_pid}/fd/{FIFO_FD}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        mine, theirs = os.fstat(fd), os.stat(f"/proc/{shell_pid}/fd/0")
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISFIFO(mine.st_mode) or (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        os.close(fd)
        return None
    return fd


def write_fifo(fd: int, data: bytes, pidfd: int | None) -> None:
    """Write all of ``data`` to the non-blocking ``fd``, waiting while it is full; BrokenPipeError once ``pidfd`` ends."""
    view = memoryview(data)
    waiter: select.poll | None = None
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        if waiter is None:
            waiter = select.poll()
            waiter.register(fd, select.POLLOUT)
            if pidfd is not None:
                waiter.register(pidfd, select.POLLIN)
        ready = {ready_fd for ready_fd, _ in waiter.poll()}
        if pidfd is not None and pidfd in ready:
            raise BrokenPipeError("the session's shell has ended")


__all__ = [
    "EXEC_SCRIPT",
    "FIFO_FD",
    "INIT_WRAPPER",
    "KEEPER_SCRIPT",
    "SESSION_WRAPPER",
    "init_entrypoint",
    "open_keeper_fifo",
    "spare_start_line",
    "write_fifo",
]
