"""The base of envs that own one sandbox: created lazily, reused, reset from snapshots.

An env builds one :class:`~rock_env.sandbox.Sandbox` on first use and keeps it for its whole
life (no new namespace or container per episode). Each task's prepared workspace is
snapshotted once; ``reset`` restores that snapshot (and stops what the previous episode left
running) instead of rebuilding anything. ``close()`` stops the sandbox.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from rock_env.core import Env
from rock_env.errors import ConfigError, RockEnvError, SandboxError

if TYPE_CHECKING:
    from rock_env.sandbox import Sandbox, SandboxConfig

logger = logging.getLogger(__name__)

#: Environment variables every tool sandbox gets (a git identity, a UTF-8 locale, a HOME).
DEFAULT_SANDBOX_ENV = {
    "GIT_AUTHOR_NAME": "agent",
    "GIT_AUTHOR_EMAIL": "agent@rock-env.local",
    "GIT_COMMITTER_NAME": "agent",
    "GIT_COMMITTER_EMAIL": "agent@rock-env.local",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
}


def sandbox_config(
    sandbox: SandboxConfig | Mapping[str, Any] | None,
    runtime: str | None,
    defaults: Mapping[str, Any] | None = None,
) -> SandboxConfig:
    """Build the :class:`SandboxConfig` of an env from its ``sandbox=`` and ``runtime=`` kwargs.

    ``defaults`` apply unless ``sandbox`` sets the field; ``runtime`` overrides both.
    """
    from rock_env.sandbox import SandboxConfig

    fields: dict[str, Any] = dict(defaults or {})
    if isinstance(sandbox, SandboxConfig):
        fields.update(sandbox.model_dump(exclude_unset=True))
    elif isinstance(sandbox, Mapping):
        fields.update(sandbox)
    elif sandbox is not None:
        raise ConfigError(
            f"sandbox= must be a SandboxConfig or a dict of its fields, got {type(sandbox).__name__}; "
            "e.g. sandbox={'runtime': 'namespace', 'memory': '1g'}."
        )
    env = dict(DEFAULT_SANDBOX_ENV)
    env.update(fields.get("env") or {})
    fields["env"] = env
    if runtime is not None:
        fields["runtime"] = runtime
    return SandboxConfig(**fields)


#: Prints the start time (clock ticks since boot, field 22 of /proc/PID/stat) of a new process:
#: "now" on the sandbox's clock. Processes started later belong to the episode.
MARK_SCRIPT = 'echo "$(read -r l < /proc/self/stat; set -- ${l##*) }; echo "ROCKMARK $((${20}))")"'

#: Kills every process of the sandbox that started at or after @MARK@ except the pids in @KEEP@
#: and itself. Each cycle stops the candidates with SIGSTOP (rescanning until a scan finds no new
#: one, so a fork bomb cannot outrun it), then SIGKILLs the stopped ones; cycles repeat until a
#: scan finds nothing new; then it waits (sleeping, up to ~2 s) until the killed ones are dead
#: (zombies at most), so the next episode does not see them. Then it runs
#: ``cat /proc/self/stat``: that checks the sandbox still runs programs (else it prints
#: ROCKBROKEN) and gives the new mark. Only builtins, ``sleep`` and ``cat``: run in a session,
#: it runs in the session's own bash.
_KILL_SCRIPT = """keep=" @KEEP@ $$ "
killed=" "
cycle=0
while [ $cycle -lt 20 ]; do
  cycle=$((cycle + 1)); stopped=" "; round=0
  while [ $round -lt 200 ]; do
    round=$((round + 1)); new=0
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      case "$keep" in *" $p "*) continue ;; esac
      read -r l < /proc/$p/stat 2>/dev/null || continue
      set -- ${l##*) }
      [ "$((${20}))" -ge @MARK@ ] || continue
      case "$1" in Z|X) continue ;; esac
      case "$killed$stopped" in *" $p:${20} "*) continue ;; esac
      kill -STOP "$p" 2>/dev/null && stopped="$stopped$p:${20} " && new=1
    done
    [ "$new" = 0 ] && break
  done
  [ "$stopped" = " " ] && break
  for k in $stopped; do kill -KILL "${k%%:*}" 2>/dev/null; done
  killed="$killed${stopped# }"
done
w=0
while [ "$killed" != " " ] && [ $w -lt 1000 ]; do
  alive=0
  for k in $killed; do
    read -r l < /proc/${k%%:*}/stat 2>/dev/null || continue
    set -- ${l##*) }
    [ "${20}" = "${k#*:}" ] || continue
    case "$1" in Z|X) ;; *) alive=1; break ;; esac
  done
  [ $alive = 0 ] && break
  w=$((w + 1)); sleep 0.002 2>/dev/null || break
done
l=$(exec cat /proc/self/stat 2>/dev/null) && [ -d "@WORKDIR@" ] || l=""
if [ -n "$l" ]; then set -- ${l##*) }; echo "ROCKMARK $((${20}))"; else echo ROCKBROKEN; fi"""


def kill_script(mark: int, keep: set[int], workdir: str = "/workspace") -> str:
    """The bash script that kills what started at or after ``mark`` (except ``keep``).

    It also checks that the sandbox still runs programs (an agent may have deleted its system
    files) and prints ``ROCKBROKEN`` if not, then prints a new mark.
    """
    script = _KILL_SCRIPT.replace("@KEEP@", " ".join(str(p) for p in sorted(keep))).replace("@MARK@", str(int(mark)))
    return script.replace("@WORKDIR@", workdir)


def parse_mark(output: str) -> int | None:
    """The mark printed by :data:`MARK_SCRIPT`."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "ROCKMARK" and parts[1].isdigit():
            return int(parts[1])
    return None


class SandboxEnv(Env):
    """An env that owns one sandbox (see the module docstring).

    Between episodes every process the last episode started is killed (on isolated runtimes:
    all processes of the sandbox that started after the episode began; on ``local``, which
    has no pid namespace, only the session and the env's background processes).

    Args:
        runtime: the sandbox runtime (``auto``, ``local``, ``namespace``, ``docker``); overrides ``sandbox``.
        sandbox: a :class:`SandboxConfig` or a dict of its fields (image, memory, pids, ...).
        base_url: run the sandbox on a rock-env server instead of locally.
        token: the API token for ``base_url``.
        seed: the seed of the first reset.
    """

    #: prefix of the agent's bash session names
    SESSION = "agent"

    #: reading these starts the sandbox or a session: GEM's wrappers must not copy them (see rock_env.core)
    live_attributes = frozenset({"sandbox", "session_name"})

    def __init__(
        self,
        *,
        runtime: str | None = None,
        sandbox: SandboxConfig | Mapping[str, Any] | None = None,
        base_url: str | None = None,
        token: str | None = None,
        seed: int | None = None,
        sandbox_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.sandbox_config = sandbox_config(sandbox, runtime, sandbox_defaults)
        self._base_url = base_url
        self._token = token
        self._sandbox: Sandbox | None = None
        self._snapshots: dict[str, str] = {}
        self._base_snapshot: str | None = None
        self._background: list[Any] = []
        self._dirty = False
        self._mark: int | None = None
        self._session_name: str | None = None
        self._session_counter = 0
        self._spare_future: Future[tuple[str, int]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        #: make the next episode's bash session in a background thread during the episode
        self.prefetch_sessions = True

    # -- the sandbox ---------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The env's sandbox, started on first use."""
        if self._sandbox is None:
            t0 = time.monotonic()
            sb = self._new_sandbox()
            try:
                sb.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    sb.stop()
                raise
            self._sandbox = sb
            self._warm_up(sb)
            logger.debug("%s: sandbox %s started in %.3f s", type(self).__name__, sb.id, time.monotonic() - t0)
        return self._sandbox

    def _new_sandbox(self) -> Sandbox:
        """A new (not yet started) sandbox for this env; subclasses may add arguments (e.g. a model service)."""
        from rock_env.sandbox import Sandbox

        return Sandbox(self.sandbox_config, base_url=self._base_url, token=self._token)

    @staticmethod
    def _warm_up(sb: Sandbox) -> None:
        """Run ``true`` until it works: the first command right after start can fail on a busy host."""
        for attempt in range(20):
            try:
                res = sb.exec(["true"], timeout=30)
            except RockEnvError:
                res = None
            if res is not None and res.exit_code == 0:
                return
            logger.debug("sandbox %s not ready (attempt %d): %s", sb.id, attempt, res.output if res else "error")
            time.sleep(0.005 * (attempt + 1))

    @property
    def runtime_name(self) -> str | None:
        """The sandbox's concrete runtime once started (``namespace``, ``docker``, ``local``, ...)."""
        if self._sandbox is None:
            return None
        return getattr(self._sandbox, "runtime", None) or self.sandbox_config.runtime

    @property
    def isolated(self) -> bool:
        """Whether the sandbox has its own pid namespace (every runtime but ``local``)."""
        return self.runtime_name not in (None, "local")

    def restore_workspace(self, key: str, prepare: Callable[[Sandbox], None] | None = None) -> bool:
        """Bring the workspace to the snapshot called ``key``, making it with ``prepare`` the first time.

        The first call for a key restores the empty workspace, runs ``prepare(sandbox)`` and
        snapshots the result; later calls only restore. Returns True if the snapshot was made now.
        """
        sb = self.sandbox
        if self._base_snapshot is None:
            self._base_snapshot = sb.snapshot()
        snap = self._snapshots.get(key)
        if snap is not None:
            sb.restore(snap)
            return False
        sb.restore(self._base_snapshot)
        if prepare is not None:
            prepare(sb)
        self._snapshots[key] = sb.snapshot()
        return True

    def reset_sandbox(
        self,
        key: str,
        prepare: Callable[[Sandbox], None] | None = None,
        start: str = "",
        session: bool = True,
    ) -> None:
        """Start an episode: stop the last one's processes, restore ``key``'s snapshot, run ``start``.

        With ``session`` the agent gets a fresh bash session (:attr:`session_name`) in the workdir.
        Sessions are made ahead of time in a background thread, so a reset does not wait for one.
        """
        self.stop_leftovers()
        self.restore_workspace(key, prepare)
        if session:
            self._activate_session()
        if self._mark is None and self.isolated:
            self._mark = self._take_mark()
        if start.strip():
            self.run_start_script(start)

    def _take_mark(self) -> int | None:
        sb = self.sandbox
        try:
            if self._session_name is not None:
                out = sb.run(MARK_SCRIPT, session=self._session_name, timeout=10).output
            else:
                out = sb.exec(["bash", "--norc", "--noprofile", "-c", MARK_SCRIPT], timeout=10).output
        except RockEnvError:
            return None
        return parse_mark(out)

    def stop_leftovers(self) -> None:
        """Stop what the last episode left running (see the class docstring)."""
        sb = self._sandbox
        if sb is None:
            return
        for proc in self._background:
            with contextlib.suppress(Exception):
                proc.kill()
        self._background.clear()
        if not self._dirty:
            return  # nothing ran since the last reset: the session is still fresh
        current = self._session_name
        if self._mark is not None and self.isolated:
            keep: set[int] = set()
            spare = self._spare_session(wait=True)
            if spare is not None:
                keep.add(spare[1])
            script = kill_script(self._mark, keep, self.sandbox_config.workdir)
            output = ""
            if current is not None:
                with contextlib.suppress(RockEnvError):
                    output = sb.run(script, session=current, timeout=10).output
            if parse_mark(output) is None:
                with contextlib.suppress(RockEnvError):
                    output = sb.exec(["bash", "--norc", "--noprofile", "-c", script], timeout=10).output
            self._mark = parse_mark(output)
            if self._mark is None or "ROCKBROKEN" in output:
                logger.warning("sandbox %s is broken (its system files were changed?): making a new one", sb.id)
                self.discard_sandbox()
                return
        if current is not None:
            self._session_name = None
            if self._executor is not None and self._mark is not None:
                # its processes are dead already; closing it can happen while the next episode runs
                self._executor.submit(self._close_quietly, sb, current)
            else:
                self._close_quietly(sb, current)
        self._dirty = False

    @staticmethod
    def _close_quietly(sb: Sandbox, session: str) -> None:
        with contextlib.suppress(RockEnvError):
            sb.close_session(session)

    # -- sessions ------------------------------------------------------------------------

    @property
    def session_name(self) -> str:
        """The name of the agent's current bash session."""
        if self._session_name is None:
            self._activate_session()
        assert self._session_name is not None
        return self._session_name

    def _new_session(self) -> tuple[str, int]:
        """Create a session; return its name and its pid inside the sandbox."""
        sb = self.sandbox
        self._session_counter += 1
        name = f"{self.SESSION}-{self._session_counter}"
        sb.create_session(name)
        out = sb.run("echo $$", session=name, timeout=10).output.strip()
        return name, int(out) if out.isdigit() else -1

    def _spare_session(self, wait: bool) -> tuple[str, int] | None:
        """The session made ahead of time, if it is ready (or ``wait``)."""
        future = self._spare_future
        if future is None or (not wait and not future.done()):
            return None
        try:
            return future.result(timeout=60)
        except Exception:
            logger.debug("making a spare session failed", exc_info=True)
            self._spare_future = None
            return None

    def _activate_session(self) -> None:
        """Make the spare session the agent's (or create one), and prepare the next spare."""
        sb = self.sandbox
        cd = 'cd "$PWD"'  # an unused session is in the workdir: re-enter it (the restore may have replaced it)
        if self._session_name is not None:
            # unused since the last reset: only make sure it is in the (restored) workdir
            with contextlib.suppress(RockEnvError):
                if sb.run(cd, session=self._session_name, timeout=10).exit_code == 0:
                    return
            with contextlib.suppress(RockEnvError):
                sb.close_session(self._session_name)
            self._session_name = None
        spare = self._spare_session(wait=True)
        self._spare_future = None
        name = None
        if spare is not None:
            with contextlib.suppress(RockEnvError):
                if sb.run(cd, session=spare[0], timeout=10).exit_code == 0:
                    name = spare[0]
            if name is None:
                with contextlib.suppress(RockEnvError):
                    sb.close_session(spare[0])
        if name is None:
            name = self._new_session()[0]
        self._session_name = name
        if self.prefetch_sessions:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rock-env-spare-session")
            self._spare_future = self._executor.submit(self._new_session)

    def discard_sandbox(self) -> None:
        """Stop the sandbox and forget its snapshots and sessions; the next use starts a new one."""
        spare_future, self._spare_future = self._spare_future, None
        if spare_future is not None:
            with contextlib.suppress(Exception):
                spare_future.result(timeout=60)
        sb, self._sandbox = self._sandbox, None
        for proc in self._background:
            with contextlib.suppress(Exception):
                proc.kill()
        self._background.clear()
        if sb is not None:
            try:
                sb.stop()
            except Exception:
                logger.warning("stopping sandbox %s failed", getattr(sb, "id", "?"), exc_info=True)
        self._snapshots.clear()
        self._base_snapshot = None
        self._session_name = None
        self._mark = None
        self._dirty = False

    # -- episode helpers -----------------------------------------------------------------

    def run_start_script(self, script: str) -> None:
        """Run a task's ``start`` script (in a subshell of the agent's session if there is one).

        The script must return: processes it starts must detach (``setsid -f cmd >/dev/null 2>&1``)
        and it should wait until they are up. They are killed at the next reset.
        """
        self._dirty = True
        sb = self.sandbox
        if self._session_name is not None:
            res = sb.run(f"(\n{script}\n) </dev/null", session=self._session_name, timeout=60)
        else:
            res = sb.exec(["bash", "--norc", "--noprofile", "-c", script], timeout=60)
        if res.exit_code != 0:
            raise SandboxError(f"the start script failed (exit {res.exit_code}): {res.output[-500:]}")

    def mark_dirty(self) -> None:
        """Record that the agent ran something (the next reset must stop leftover processes)."""
        self._dirty = True

    def close(self) -> None:
        """Stop the sandbox; the env cannot be used afterwards. Idempotent."""
        self.discard_sandbox()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        super().close()

    def __del__(self) -> None:
        # A forgotten env: stop its sandbox (the sandbox's own reaper also does when the process dies).
        with contextlib.suppress(Exception):
            if getattr(self, "_sandbox", None) is not None:
                self.close()
