"""The local runtime: plain host subprocesses in a private working directory, NO isolation.

Meant for development and hosts without bubblewrap or Docker (e.g. macOS). Commands see the
host's whole file system; only the file API is confined to the sandbox's workspace and
nothing else (``/tmp`` in commands is the host's; ``$TMPDIR`` points to a private directory). Limits use cgroups if writable, else rlimits.
Sandbox paths (``/workspace/...``) are mapped to the host directory for the file API and
``cwd``; inside commands ``$HOME`` and the working directory are the host directory.
"""

from __future__ import annotations

import signal
import threading
import weakref
from pathlib import Path

from rock_env.errors import SandboxClosed
from rock_env.sandbox.hostproc import HostProcessPipe
from rock_env.sandbox.models import SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.runtimes.hostdir import HostDirRuntime


class LocalRuntime(HostDirRuntime):
    """Sandboxes as host subprocesses (see the module docstring)."""

    name = "local"

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self._pipes: weakref.WeakSet[HostProcessPipe] = weakref.WeakSet()
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        """Always available."""
        return True

    def start(self) -> None:
        """Create the private directories (and cgroups when possible)."""
        self._prepare()
        self._started = True

    def stop(self) -> None:
        """Kill every process the sandbox started and remove its directories."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for pipe in list(self._pipes):
            pipe.signal_descendants(signal.SIGKILL)
            pipe.signal_group(signal.SIGKILL)
        self._teardown()

    def alive(self) -> bool:
        """True between start and stop."""
        return self._started and not self._stopped

    def default_env(self) -> dict[str, str]:
        """As the base, with ``HOME`` the host directory behind the workspace and ``TMPDIR`` a private one."""
        env = super().default_env()
        env["HOME"] = str(self.workspace)
        env["TMPDIR"] = str(self.tmp)
        return env

    def _roots(self) -> list[tuple[str, Path]]:
        # commands see the host's /tmp, so the file API maps only the workdir (not a fake /tmp)
        return [(self.config.workdir, self.workspace)]

    def open_process(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = True,
    ) -> ProcessPipe:
        """Start ``argv`` on the host in the sandbox's directory (cwd mapped from sandbox paths)."""
        if not self.alive():
            raise SandboxClosed(f"sandbox {self.sandbox_id} is not running; start a new one")
        host_cwd = self.host_path(cwd or self.config.workdir, must_exist=True)
        pipe = HostProcessPipe([*self.launcher(), *argv], cwd=str(host_cwd), env=env, stdin=stdin)
        self._pipes.add(pipe)
        return pipe
