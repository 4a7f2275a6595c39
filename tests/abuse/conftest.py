"""The abuse suite: attacks on sandboxes and on the server, on every isolating runtime, locally and remotely.

Targets: {namespace, docker} x {the local SDK (``rock.Sandbox(runtime=...)``), a real admin server
(``rock.Sandbox(runtime=..., base_url=URL)`` against ``rock-env admin start`` in a child process)}.
A test asks for the ``arena`` fixture (parametrized over the targets) and gets:

- ``arena.sandbox(**config)``: a started sandbox of the target (stopped at the end);
- ``arena.canary``: a long-lived sandbox on the same target whose file and shell are checked
  before the attack and in :meth:`Arena.finish`;
- :meth:`Arena.finish`: stops the test's sandboxes, checks the canary, and asserts that nothing the
  test's sandboxes created is left on the host (processes, containers, mounts, cgroups, state and
  temp dirs; see :mod:`tests.abuse.hostscan`), waiting up to 10 s for background teardown.

Every sandbox of the run gets a private state root, its environment carries the run's tag, and
servers run with their own state root and temp dir, so that two xdist workers (or other test runs
on the host) never count each other's sandboxes. Servers require an API token (a secret the
sandboxes must not see); the test process also holds ``$ROCK_ENV_ABUSE_SECRET``.

Without bubblewrap or Docker the tests skip, which ``ROCK_ENV_REQUIRE_ALL_BACKENDS=1`` turns
into failures (see tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.abuse import hostscan

REQUIRE_ALL = os.environ.get("ROCK_ENV_REQUIRE_ALL_BACKENDS") == "1"
SECRET_VAR = "ROCK_ENV_ABUSE_SECRET"
RUNTIMES = ("namespace", "docker")
VIAS = ("sdk", "server")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "abuse: the security abuse suite (tests/abuse): attacks on sandboxes and servers"
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """With ``-v`` (or ROCK_ENV_ABUSE_FIGURES=1): the host objects each case saw before, during and after it."""
    if config.getoption("verbose") < 1 and os.environ.get("ROCK_ENV_ABUSE_FIGURES") != "1":
        return
    rows = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for key, value in getattr(report, "user_properties", []):
                if key == "abuse_figures":
                    rows.append((report.nodeid.split("::", 1)[-1], value))
    if not rows:
        return
    kinds = hostscan.KINDS
    terminalreporter.section("abuse suite: our host objects before / during / after each case")
    terminalreporter.write_line("case: " + ", ".join(kinds) + "  (each as before/during/after)")
    for name, figures in sorted(rows):
        cells = [f"{figures['before'][k]}/{figures['during'][k]}/{figures['after'][k]}" for k in kinds]
        terminalreporter.write_line(f"{name}: " + "  ".join(cells))


@dataclass(frozen=True)
class Target:
    """Where an attack runs: a runtime, reached through the local SDK or through a server."""

    runtime: str
    via: str

    @property
    def id(self) -> str:
        return f"{self.runtime}-{self.via}"

    @property
    def remote(self) -> bool:
        return self.via == "server"


def target_params(runtimes: tuple[str, ...] = RUNTIMES, vias: tuple[str, ...] = VIAS) -> list[Any]:
    """pytest params for the targets (with the markers of what each needs)."""
    out = []
    for runtime in runtimes:
        for via in vias:
            marks = [pytest.mark.bwrap if runtime == "namespace" else pytest.mark.docker]
            if via == "server":
                marks.append(pytest.mark.server)
            out.append(pytest.param(Target(runtime, via), id=f"{runtime}-{via}", marks=marks))
    return out


ALL_TARGETS = target_params()


# --- the run: private state roots, a tag, secrets ------------------------------------------------


@pytest.fixture(scope="session")
def scope(tmp_path_factory: pytest.TempPathFactory) -> hostscan.Scope:
    """What belongs to this run (this xdist worker): its private state root, tag, secret and pids."""
    import tempfile

    base = tmp_path_factory.mktemp("abuse")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run = hostscan.Scope(
        tag=f"{worker}-{os.getpid()}-{secrets.token_hex(4)}", base=base, secret="abuse-secret-" + secrets.token_hex(12)
    )
    run.add_root(base / "state")
    run.add_temp(Path(tempfile.gettempdir()))
    run.pids.add(os.getpid())
    return run


@pytest.fixture(scope="module", autouse=True)
def abuse_environment(scope: hostscan.Scope) -> Iterator[None]:
    """The module's cases (and its servers and canaries, set up after this) run with the run's private state
    root and a secret in the test process's environment; both are undone after the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROCK_ENV_SANDBOX_STATE", str(scope.state_roots[0]))
        patch.setenv(SECRET_VAR, scope.secret)
        yield


def runtime_available(request: pytest.FixtureRequest, runtime: str) -> None:
    """Skip (a failure with ROCK_ENV_REQUIRE_ALL_BACKENDS=1) if ``runtime`` cannot run here."""
    if runtime == "namespace":
        from rock_env.sandbox.runtimes.namespace import NamespaceRuntime

        if not NamespaceRuntime.available():
            pytest.skip("the namespace runtime is unavailable (bubblewrap, nsenter, setpriv and user namespaces)")
        return
    from rock_env.sandbox.runtimes.docker import DockerRuntime

    if not REQUIRE_ALL and not DockerRuntime.available():
        pytest.skip("the Docker daemon does not answer")
    request.getfixturevalue("docker_image")  # starts the daemon (CI) and builds the base image once


# --- servers ------------------------------------------------------------------------------------


class Server:
    """A ``rock-env admin start`` child process with its own state root, temp dir and API token."""

    def __init__(self, scope: hostscan.Scope, directory: Path, *overrides: str) -> None:
        from rock_env.server.testing import ServerProcess

        self.directory = directory
        self.token = "abuse-token-" + secrets.token_hex(16)
        self.state = directory / "state"
        self.tmp = directory / "tmp"
        data = directory / "data"
        for path in (self.tmp, data):
            path.mkdir(parents=True, exist_ok=True)
        env = {"ROCK_ENV_SANDBOX_STATE": str(self.state), "TMPDIR": str(self.tmp), "ROCK_ENV_TOKEN": self.token}
        self.process = ServerProcess.admin(data, *overrides, env=env)
        self.scope = scope
        scope.add_root(self.state)
        scope.add_temp(self.tmp)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> Server:
        self.process.start()
        self.scope.pids.add(self.process.pid)
        return self

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> Server:
        self.process.restart()
        self.scope.pids.add(self.process.pid)
        return self

    def stop(self) -> None:
        self.process.stop()
        with contextlib.suppress(Exception):
            self.process._log.close()

    def log(self) -> str:
        return self.process.log()


def new_server(scope: hostscan.Scope, name: str, *overrides: str) -> Server:
    directory = scope.base / f"{name}-{secrets.token_hex(3)}"
    return Server(scope, directory, *overrides)


@pytest.fixture(scope="module")
def module_server(scope: hostscan.Scope) -> Iterator[Server]:
    """One admin per test module (and xdist worker), started on first use."""
    server = new_server(scope, "admin").start()
    yield server
    server.stop()


# --- sandboxes ------------------------------------------------------------------------------------


def internal_id(sandbox: Any) -> str | None:
    """The ``sb-...`` id of a local or remote sandbox (the worker's SDK id for a remote one)."""
    placement = getattr(sandbox, "placement", None)
    if placement is not None:
        sid = (placement.config or {}).get("sandbox_id")
        return sid if isinstance(sid, str) else None
    sid = getattr(sandbox, "id", None)
    return sid if isinstance(sid, str) and sid.startswith("sb-") else None


def open_sandbox(
    target: Target, scope: hostscan.Scope, server: Server | None, *, keep: bool = False, **config: Any
) -> Any:
    """Create and start a sandbox on ``target`` (registered with the scope)."""
    import rock_env as rock

    env = {hostscan.TAG_VAR: scope.tag, **config.pop("env", {})}
    if target.remote:
        assert server is not None
        sandbox = rock.Sandbox(runtime=target.runtime, base_url=server.url, token=server.token, env=env, **config)
    else:
        sandbox = rock.Sandbox(runtime=target.runtime, env=env, **config)
        scope.ids.add(sandbox.id)
        if keep:
            scope.keep.add(sandbox.id)
    try:
        sandbox.start()
    finally:
        sid = internal_id(sandbox)
        if sid is not None:
            scope.ids.add(sid)
            if keep:
                scope.keep.add(sid)
    return sandbox


def container_id(name: str) -> str:
    """The full id of a docker container."""
    import subprocess

    done = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"docker inspect {name}: {done.stderr}"
    return done.stdout.strip()


class Canary:
    """A sandbox next to the attacks: its file and its shell must be intact before and after each one."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.token = "canary-" + secrets.token_hex(8)
        sandbox.write_file("canary.txt", self.token)
        sandbox.run("cd /tmp && export CANARY_VAR=ok")

    def problems(self) -> list[str]:
        """What is wrong with the canary (empty: intact)."""
        out = []
        try:
            result = self.sandbox.run("cat /workspace/canary.txt; echo; echo $CANARY_VAR; pwd", timeout=30)
            if result.exit_code != 0 or result.output != f"{self.token}\nok\n/tmp\n":
                out.append(f"canary shell: exit {result.exit_code}, output {result.output[-300:]!r}")
            if self.sandbox.read_file("canary.txt") != self.token:
                out.append("canary file changed")
        except Exception as exc:
            out.append(f"canary unusable: {type(exc).__name__}: {exc}")
        return out


@pytest.fixture(scope="module")
def canaries(scope: hostscan.Scope) -> Iterator[dict[str, Canary]]:
    """The canary of each target (created on first use, one per module and worker)."""
    made: dict[str, Canary] = {}
    yield made
    for canary in made.values():
        with contextlib.suppress(Exception):
            canary.sandbox.stop()


class Arena:
    """One attack on one target: its sandboxes, the canary, the leak baseline."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        target: Target,
        scope: hostscan.Scope,
        canaries: dict[str, Canary],
    ) -> None:
        self.target = target
        self.scope = scope
        self.node = request.node
        self.server: Server | None = request.getfixturevalue("module_server") if target.remote else None
        canary = canaries.get(target.id)
        if canary is not None and canary.problems():  # broken by an earlier test (which failed for it)
            with contextlib.suppress(Exception):
                canary.sandbox.stop()
            canary = None
        if canary is None:
            canary = Canary(open_sandbox(target, scope, self.server, keep=True))
            canaries[target.id] = canary
            problems = canary.problems()
            assert not problems, f"a fresh canary sandbox does not work: {problems}"
        self.canary = canary
        self.canaries = canaries
        self._sandboxes: list[Any] = []
        self.before = hostscan.snapshot(scope)
        self.finished = False

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def token(self) -> str:
        assert self.server is not None
        return self.server.token

    def sandbox(self, **config: Any) -> Any:
        """A started sandbox of the target with ``config`` (stopped in :meth:`finish`)."""
        sandbox = open_sandbox(self.target, self.scope, self.server, **config)
        self._sandboxes.append(sandbox)
        return sandbox

    def host_pids(self, sandbox: Any) -> list[int]:
        """Host pids of every process inside ``sandbox`` (by its cgroups: the sandbox's or the container's)."""
        sid = internal_id(sandbox)
        assert sid is not None, f"no sandbox id for {sandbox!r}"
        needle = f"rock-env-{sid}" if self.target.runtime == "namespace" else container_id(f"rock-env-{sid}")
        return [pid for pid, proc in hostscan.processes().items() if needle in proc.cgroup]

    def stop_all(self) -> None:
        for sandbox in self._sandboxes:
            with contextlib.suppress(Exception):
                sandbox.stop()
        self._sandboxes = []

    def finish(self, *, settle: float = hostscan.SETTLE) -> None:
        """Stop the sandboxes; assert the canary is intact and nothing is left on the host."""
        self.finished = True
        during = hostscan.snapshot(self.scope)
        self.stop_all()
        problems = self.canary.problems()
        if problems:
            with contextlib.suppress(Exception):
                self.canary.sandbox.stop()
            self.canaries.pop(self.target.id, None)
        left, after = hostscan.wait_for_no_leaks(self.scope, self.before, settle)
        if left:
            hostscan.reap_leftovers(self.scope)
        figures = {
            name: hostscan.counts(snap)
            for name, snap in (("before", self.before), ("during", during), ("after", after))
        }
        self.node.user_properties.append(("abuse_figures", figures))
        assert not problems, f"the canary sandbox was affected by the attack: {problems}"
        assert not left, (
            f"left on the host {settle:.0f}s after the sandboxes were stopped "
            f"(before: {hostscan.counts(self.before)}, after: {hostscan.counts(after)}):{hostscan.describe(left)}"
        )


@pytest.fixture(params=ALL_TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    """Each target; skips (fails under ROCK_ENV_REQUIRE_ALL_BACKENDS=1) when its runtime is missing."""
    value: Target = request.param
    runtime_available(request, value.runtime)
    return value


@pytest.fixture
def arena(
    request: pytest.FixtureRequest, target: Target, scope: hostscan.Scope, canaries: dict[str, Canary]
) -> Iterator[Arena]:
    """An attack on ``target`` (see :class:`Arena`)."""
    ctx = Arena(request, target, scope, canaries)
    yield ctx
    if not ctx.finished:
        ctx.stop_all()


def brief(result: Any, limit: int = 400) -> str:
    """A CommandResult (or anything) for an assertion message, its output cut to ``limit`` characters."""
    output = getattr(result, "output", None)
    if not isinstance(output, str):
        return repr(result)[:limit]
    if len(output) > limit:
        output = f"{output[: limit // 2]}...<{len(output) - limit} chars>...{output[-limit // 2 :]}"
    fields = {
        k: getattr(result, k, None)
        for k in ("exit_code", "timed_out", "oom_killed", "truncated", "session_restarted", "duration")
    }
    text = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
    return f"({text}, output={output!r})"


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
