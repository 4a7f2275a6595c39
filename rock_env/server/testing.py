"""Running admins and workers as child processes (tests, benchmarks, notebooks).

:class:`ServerProcess` starts ``rock-env admin start`` or ``rock-env worker start`` with
``port=0`` and a port file, waits until ``/api/v1/health`` answers, and stops (SIGTERM)
or kills (SIGKILL) it by its own PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rock_env.errors import ServerUnavailable


class ServerProcess:
    """A ``rock-env admin``/``worker`` child process on a free loopback port."""

    def __init__(self, argv: list[str], port_file: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.port_file = port_file
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as this object

    @classmethod
    def admin(
        cls, data_dir: str | os.PathLike[str], *overrides: str, env: dict[str, str] | None = None
    ) -> ServerProcess:
        """An admin with its state in ``data_dir``; ``overrides`` are Hydra overrides.

        Unless the overrides say ``workers=...``, the admin hosts everything in its own process
        (``workers=0``, its embedded worker), not ``rock-env admin start``'s default of one
        worker process per core.
        """
        port_file = Path(data_dir) / "port"
        workers = [] if any(o.startswith("workers=") for o in overrides) else ["workers=0"]
        argv = [
            "admin",
            "start",
            "server.port=0",
            f"server.data_dir={data_dir}",
            f"server.port_file={port_file}",
            "server.log_level=warning",
            *workers,
            *overrides,
        ]
        return cls(argv, port_file, env)

    @classmethod
    def worker(
        cls, admin_url: str, workdir: str | os.PathLike[str], *overrides: str, env: dict[str, str] | None = None
    ) -> ServerProcess:
        """A worker that joins ``admin_url``."""
        port_file = Path(workdir) / "worker-port"
        argv = ["worker", "start", "--admin", admin_url, "--port-file", str(port_file), "worker.log_level=warning"]
        return cls([*argv, *overrides], port_file, env)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The child's PID."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start and wait until healthy."""
        self.port_file.unlink(missing_ok=True)
        self.port = 0
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rock_env.cli", *self.argv], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerUnavailable(f"{' '.join(self.argv[:2])} exited with {self.proc.returncode}: {self.log()}")
            if self.port == 0 and self.port_file.exists():
                text = self.port_file.read_text().strip()
                self.port = int(text) if text else 0
            if self.port:
                try:
                    if httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise ServerUnavailable(f"{' '.join(self.argv[:2])} did not become healthy in {timeout:.0f}s: {self.log()}")

    def restart(self, timeout: float = 60.0) -> ServerProcess:
        """Start again on the same port (after :meth:`kill` or :meth:`stop`), so clients keep their URL."""
        port = self.port
        self.argv = [a if not a.startswith("server.port=") else f"server.port={port}" for a in self.argv]
        return self.start(timeout)

    def log(self) -> str:
        """What the process printed (last 4000 characters)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (the server closes what it hosts)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()
