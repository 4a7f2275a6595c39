"""The sandbox contract: the ops table, the four sandbox classes and the server's routes agree.

Static parity: every op of :data:`OPS` is a method of the API, every class has every API method
with the Protocol's kind and signature, and the remote classes define each method themselves (an
inherited local method would run local code on a remote object). Behaviour: one test per op,
run on a local sandbox and on a remote one (a real admin on loopback), sync and async.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIWebSocketRoute

import rock_env as rock
from rock_env.errors import InvalidArgument, SandboxClosed, SessionNotFound, SnapshotNotFound
from rock_env.protocol import ProcessHandle
from rock_env.remote.sandbox import (
    AsyncRemoteBackgroundProcess,
    AsyncRemoteSandbox,
    RemoteBackgroundProcess,
    RemoteSandbox,
)
from rock_env.remote.sandbox_wire import RemoteState
from rock_env.sandbox import AsyncSandbox, Sandbox, teardown
from rock_env.sandbox.contract import (
    API_METHODS,
    OPS,
    OPS_BY_NAME,
    AsyncProcessAPI,
    AsyncSandboxAPI,
    ProcessAPI,
    SandboxAPI,
    SandboxOp,
    Wire,
    invoke,
)
from rock_env.sandbox.models import CommandResult
from rock_env.sandbox.processes import AsyncProcess, BackgroundProcess
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings

SYNC_CLASSES = [Sandbox, RemoteSandbox]
ASYNC_CLASSES = [AsyncSandbox, AsyncRemoteSandbox]
ASYNC_METHODS = (*API_METHODS, "arun")
SANDBOX_OPS = [o for o in OPS if o.target == "sandbox"]
#: Methods the remote classes inherit: each only calls other API methods.
DELEGATING = {"close", "arun", "__enter__", "__exit__", "__aenter__", "__aexit__"}
#: Method parameters that carry a path or query parameter under another name.
ALIASES = {"proc": "proc_id", "path": ("path", "remote")}


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


# --- the table ---------------------------------------------------------------------------------


def test_op_names_are_unique_and_every_sandbox_op_is_an_api_method() -> None:
    assert len(OPS_BY_NAME) == len(OPS)
    for o in OPS:
        if o.target == "sandbox":
            assert o.attr in API_METHODS, o.name
        elif o.target == "process":
            assert o.attr in dir(ProcessAPI), o.name
    assert {o.attr for o in SANDBOX_OPS} >= set(API_METHODS) - {"start", "close", "alive"}


@pytest.mark.parametrize("o", SANDBOX_OPS, ids=lambda o: o.name)
def test_op_arguments_are_method_parameters(o: SandboxOp) -> None:
    """Request fields, path and query parameters each name a parameter of the sandbox method."""
    names = {name for name, _, _ in _params(getattr(SandboxAPI, o.attr or o.name))}
    wanted = [p for p in o.path_params if p != "sandbox"] + list(o.query)
    wanted += list(o.request.model_fields) if o.request is not None else []
    for field in wanted:
        alias = ALIASES.get(field, field)
        options = alias if isinstance(alias, tuple) else (alias,)
        assert names & set(options), f"{o.name}: {field!r} is no parameter of {sorted(names)}"


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route of an app, included routers followed (``original_router`` on recent FastAPI)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _routes(inner.routes) if inner is not None else [route]


def test_the_server_serves_every_op_at_its_route(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=str(tmp_path)))
    paths = app.openapi()["paths"]
    http = {(m.upper(), path) for path, item in paths.items() for m in item}
    ws = {r.path for r in _routes(app.routes) if isinstance(r, APIWebSocketRoute)}
    for o in OPS:
        if o.wire is Wire.WEBSOCKET:
            assert o.full_path in ws, o.name
        else:
            assert (o.http_method, o.full_path) in http, o.name


# --- the four classes --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SYNC_CLASSES, ids=lambda c: c.__name__)
def test_sync_classes_have_the_protocols_methods(cls: type) -> None:
    for name in API_METHODS:
        method = getattr(cls, name)
        assert callable(method) and not inspect.iscoroutinefunction(method), name
        assert _params(method) == _params(getattr(SandboxAPI, name)), name
    assert isinstance(inspect.getattr_static(cls, "runtime"), property)


@pytest.mark.parametrize("cls", ASYNC_CLASSES, ids=lambda c: c.__name__)
def test_async_classes_have_the_protocols_methods(cls: type) -> None:
    for name in ASYNC_METHODS:
        method = getattr(cls, name)
        if name == "stream":
            assert inspect.isasyncgenfunction(method), name
        else:
            assert inspect.iscoroutinefunction(method), name
        assert _params(method) == _params(getattr(AsyncSandboxAPI, name)), name
        if name in API_METHODS:  # the same signature as the sync method
            assert _params(method) == _params(getattr(SandboxAPI, name)), name
    assert isinstance(inspect.getattr_static(cls, "runtime"), property)


@pytest.mark.parametrize(
    ("remote", "local", "methods"),
    [(RemoteSandbox, Sandbox, API_METHODS), (AsyncRemoteSandbox, AsyncSandbox, ASYNC_METHODS)],
    ids=["sync", "async"],
)
def test_remote_classes_are_the_local_ones_and_define_every_method_themselves(
    remote: type, local: type, methods: tuple[str, ...]
) -> None:
    assert issubclass(remote, local)
    enter = ("__enter__", "__exit__") if local is Sandbox else ("__aenter__", "__aexit__")
    for name in (*methods, *enter, "__repr__"):
        if name in remote.__dict__:
            continue
        # inherited: only a delegation to other API methods (no state of the local class) is allowed
        assert name in DELEGATING, f"{remote.__name__}.{name} would run {local.__name__}'s local code"
        body = inspect.getsource(getattr(local, name)).split('"""')[-1]
        assert "self._" not in body, f"{local.__name__}.{name} touches local state: {body!r}"
    assert "runtime" in RemoteState.__dict__ and remote.__mro__.index(RemoteState) < remote.__mro__.index(local)


@pytest.mark.parametrize(
    ("cls", "api"),
    [
        (BackgroundProcess, ProcessAPI),
        (RemoteBackgroundProcess, ProcessAPI),
        (AsyncProcess, AsyncProcessAPI),
        (AsyncRemoteBackgroundProcess, AsyncProcessAPI),
    ],
    ids=lambda c: getattr(c, "__name__", ""),
)
def test_process_handles_have_the_protocols_methods(cls: type, api: type) -> None:
    for name, member in api.__dict__.items():
        if name.startswith("_") or not callable(member):
            continue
        method = getattr(cls, name)
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(member), name
        wanted, have = _params(member), _params(method)
        assert have[: len(wanted)] == wanted, name  # the Protocol's parameters, then only optional extras
        assert all(p[2] is not inspect.Parameter.empty for p in have[len(wanted) :]), name


# --- behaviour: one test per op, local and remote ----------------------------------------------


@pytest.fixture(scope="module")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("contract-state")
    old = os.environ.get("ROCK_ENV_SANDBOX_STATE")
    os.environ["ROCK_ENV_SANDBOX_STATE"] = str(root)
    yield root
    assert teardown.wait_all(timeout=30)
    if old is None:
        os.environ.pop("ROCK_ENV_SANDBOX_STATE", None)
    else:
        os.environ["ROCK_ENV_SANDBOX_STATE"] = old


@pytest.fixture(scope="module")
def admin(state_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin")), allow_local_runtime=True)
    srv = BackgroundServer(create_app(settings)).start()
    yield srv
    srv.stop()


@pytest.fixture(params=["local", pytest.param("remote", marks=pytest.mark.server)])
def make(request: pytest.FixtureRequest, state_root: Path) -> Iterator[Callable[[], Sandbox]]:
    """Build (not start) sandboxes of one backend; all are stopped after the test."""
    made: list[Sandbox] = []
    url = request.getfixturevalue("admin").url if request.param == "remote" else None

    def build() -> Sandbox:
        sb = rock.Sandbox(runtime="local", base_url=url)
        made.append(sb)
        return sb

    yield build
    for sb in made:
        sb.stop()


def _started(make: Callable[[], Sandbox]) -> Sandbox:
    return make().start()


def op_create(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    assert isinstance(sb, rock.Sandbox) and sb.start() is sb and sb.id and sb.runtime == "local"


def op_list(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = _started(make)
    if isinstance(sb, RemoteSandbox):
        listed = httpx.get(sb.base_url + OPS_BY_NAME["list"].full_path).json()["sandboxes"]
        assert sb.id in [s["id"] for s in listed]


def op_status(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    assert sb.status().status == "created" and not sb.alive()  # no start on status
    sb.start()
    assert sb.status().status == "running" and sb.alive()
    sb.stop()
    assert sb.status().status == "stopped" and not sb.alive()


def op_stop(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = _started(make)
    sb.stop()
    sb.close()  # idempotent
    with pytest.raises(SandboxClosed):
        sb.run("true")
    with pytest.raises(SandboxClosed):
        sb.start()


def op_run(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    with pytest.raises(InvalidArgument):
        sb.run(["echo"])  # type: ignore[arg-type]
    assert not sb.alive()  # a bad argument is refused before anything starts
    assert sb.run("export A=1").exit_code == 0  # starts on first use
    result = sb.run("echo $A")
    assert isinstance(result, CommandResult) and result.output == "1\n"


def op_exec(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    assert sb.exec(["printf", "%s", "x y"], env={"Q": "1"}).output == "x y"
    assert sb.exec("cat", stdin=b"in").output == "in"


def op_interrupt(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    sb.interrupt()  # nothing runs: a no-op (and it starts the sandbox)
    assert sb.alive()
    with pytest.raises(SessionNotFound):
        sb.interrupt("nope")


def op_stream(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    stream = sb.stream("echo a; echo b; exit 4")
    assert "".join(stream) == "a\nb\n" and stream.exit_code == 4 and not stream.timed_out


def op_stream_ws(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    with sb.stream("echo ws", transport="ws") as stream:
        assert "".join(stream) == "ws\n"
    assert stream.exit_code == 0
    with pytest.raises(InvalidArgument):
        sb.stream("true", transport="smoke")  # type: ignore[arg-type]


def op_create_session(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    assert sb.create_session("s", env={"X": "2"}).name == "s"
    assert sb.run("echo $X", session="s").output == "2\n"


def op_sessions(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    assert sb.sessions() == [] and not sb.alive()  # no start on sessions
    sb.create_session("s")
    assert [s.name for s in sb.sessions()] == ["s"]


def op_close_session(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    with pytest.raises(SessionNotFound):
        sb.close_session("s")
    assert not sb.alive()  # no start on close_session
    sb.create_session("s")
    sb.close_session("s")
    assert sb.sessions() == []


def op_spawn(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    proc = sb.spawn("echo bg; exit 3")
    assert isinstance(proc, ProcessAPI) and proc.id and proc.pid
    assert proc.wait(10) == 3 and proc.result().exit_code == 3
    started = sb.start("sleep 0.1")
    assert started.wait(10) == 0


def op_process(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    proc = sb.spawn("echo again")
    proc.wait(10)
    found = sb.process(proc.id)
    assert found.id == proc.id and found.output() == "again\n" and found.exit_code == 0 and not found.running
    assert found.info().command == "echo again"
    with pytest.raises(InvalidArgument):
        sb.process("proc-nope")


def op_process_wait(make: Callable[[], Sandbox], tmp: Path) -> None:
    proc = make().spawn("sleep 3; exit 5")
    assert proc.wait(0.01) is None and proc.running
    assert proc.wait(10) == 5


def op_process_output(make: Callable[[], Sandbox], tmp: Path) -> None:
    proc = make().spawn("echo out")
    proc.wait(10)
    assert proc.output() == "out\n"


def op_process_kill(make: Callable[[], Sandbox], tmp: Path) -> None:
    proc = make().spawn("sleep 60")
    proc.kill()
    assert proc.wait(10) is not None and not proc.running


def op_write_file(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    sb.write_file("d/f.txt", "héllo")
    assert sb.exec("cat d/f.txt").output == "héllo"
    with pytest.raises(InvalidArgument):
        sb.write_file("x", 3)  # type: ignore[arg-type]


def op_read_file(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    sb.write_file("f.bin", b"\xffA")
    assert sb.read_file("f.bin", binary=True) == b"\xffA"
    assert sb.read_file("f.bin") == "\ufffdA"


def op_list_dir(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    sb.write_file("ls/a", "1")
    assert [e.name for e in sb.list_dir("ls")] == ["a"]
    assert "ls" in [e.name for e in sb.list_dir()]


def op_upload(make: Callable[[], Sandbox], tmp: Path) -> None:
    src = tmp / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "b.txt").write_text("B")
    sb = make()
    sb.upload(src, "up")
    assert sb.read_file("up/sub/b.txt") == "B"
    with pytest.raises(InvalidArgument):
        sb.upload(tmp / "missing", "x")


def op_download(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    sb.write_file("dl/c.txt", "C")
    sb.download("dl", tmp / "back")
    assert (tmp / "back" / "c.txt").read_text() == "C"


def op_snapshot(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    sb.write_file("s.txt", "1")
    assert sb.snapshot().startswith("snap-")


def op_snapshots(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    assert sb.snapshots() == []
    snap = sb.snapshot()
    assert [s.id for s in sb.snapshots()] == [snap]


def op_delete_snapshot(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    with pytest.raises(SnapshotNotFound):
        sb.delete_snapshot("snap-nope")
    snap = sb.snapshot()
    sb.delete_snapshot(snap)
    assert sb.snapshots() == []


def op_restore(make: Callable[[], Sandbox], tmp: Path) -> None:
    sb = make()
    with pytest.raises(SnapshotNotFound):
        sb.restore("snap-nope")
    assert not sb.alive()  # no start on restore
    sb.write_file("r.txt", "before")
    snap = sb.snapshot()
    sb.write_file("r.txt", "after")
    sb.restore(snap)
    assert sb.read_file("r.txt") == "before"


BEHAVIOUR: dict[str, Callable[[Callable[[], Sandbox], Path], None]] = {
    name[3:]: fn for name, fn in dict(globals()).items() if name.startswith("op_") and callable(fn)
}


def test_every_op_has_a_behaviour_test() -> None:
    assert set(BEHAVIOUR) == set(OPS_BY_NAME)


@pytest.mark.parametrize("name", list(OPS_BY_NAME))
def test_op(name: str, make: Callable[[], Sandbox], tmp_path: Path) -> None:
    BEHAVIOUR[name](make, tmp_path)


# --- the worker's side: invoke ------------------------------------------------------------------


def test_invoke_runs_ops_on_a_local_sandbox(state_root: Path, tmp_path: Path) -> None:
    from rock_env.protocol import ProcessWaitRequest, RunRequest, SpawnRequest

    with Sandbox(runtime="local") as sb:
        result = invoke(sb, OPS_BY_NAME["run"], {"sandbox": "x"}, None, RunRequest(cmd="echo hi"))
        assert result.output == "hi\n"
        handle = invoke(sb, OPS_BY_NAME["spawn"], {}, None, SpawnRequest(cmd="exit 2"))
        assert isinstance(handle, ProcessHandle)
        waited = invoke(sb, OPS_BY_NAME["process_wait"], {"proc": handle.id}, None, ProcessWaitRequest(timeout=10))
        assert waited.exit_code == 2 and not waited.running
        assert invoke(sb, OPS_BY_NAME["write_file"], {}, {"path": "f"}, b"data").ok
        assert invoke(sb, OPS_BY_NAME["read_file"], {}, {"path": "f"}) == b"data"
        assert [e.name for e in invoke(sb, OPS_BY_NAME["list_dir"], {}, {"path": "."})] == ["f"]
        snap = invoke(sb, OPS_BY_NAME["snapshot"]).snapshot_id
        assert invoke(sb, OPS_BY_NAME["delete_snapshot"], {"snapshot_id": snap}).ok
        invoke(sb, OPS_BY_NAME["download"], {}, {"path": "f"}, tmp_path / "f")
        assert (tmp_path / "f").read_bytes() == b"data"
        with pytest.raises(InvalidArgument):
            invoke(sb, OPS_BY_NAME["list"])


# --- async: the same ops through the async classes ---------------------------------------------


@pytest.mark.parametrize("backend", ["local", pytest.param("remote", marks=pytest.mark.server)])
def test_async_classes_cover_every_op(backend: str, state_root: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("admin").url if backend == "remote" else None

    async def main() -> None:
        sb = rock.AsyncSandbox(runtime="local", base_url=url)
        assert isinstance(sb, rock.AsyncSandbox)
        assert (await sb.status()).status == "created" and await sb.sessions() == [] and not await sb.alive()
        async with sb:
            assert (await sb.arun("echo $((1+1))")).output == "2\n" and (await sb.run("true")).exit_code == 0
            assert (await sb.exec(["echo", "e"])).output == "e\n"
            await sb.interrupt()
            assert "".join([c async for c in sb.stream("echo s")]) == "s\n"
            await sb.create_session("a")
            assert "a" in [s.name for s in await sb.sessions()]
            await sb.close_session("a")
            proc = await sb.spawn("echo p; exit 1")
            assert await proc.wait(10) == 1 and await proc.output() == "p\n"
            assert (await (await sb.process(proc.id)).info()).exit_code == 1
            assert (await proc.result()).exit_code == 1
            slow = await sb.start("sleep 60")
            await slow.kill()
            assert await slow.wait(10) is not None
            await sb.write_file("f", "F")
            assert await sb.read_file("f") == "F" and [e.name for e in await sb.list_dir()] == ["f"]
            await sb.download("f", str(Path(state_root) / f"dl-{backend}"))
            await sb.upload(str(Path(state_root) / f"dl-{backend}"), "g")
            assert await sb.read_file("g", binary=True) == b"F"
            snap = await sb.snapshot()
            await sb.write_file("f", "changed")
            await sb.restore(snap)
            assert await sb.read_file("f") == "F" and [s.id for s in await sb.snapshots()] == [snap]
            await sb.delete_snapshot(snap)
            assert await sb.alive() and sb.runtime == "local"
        assert (await sb.status()).status == "stopped"
        with pytest.raises(SandboxClosed):
            await sb.run("true")
        await sb.close()

    asyncio.run(main())


def test_the_sandbox_layer_needs_a_registered_remote_class() -> None:
    """Without the layer above (nothing imported it), ``base_url`` is a clear error, not an upward import."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from rock_env.errors import RockEnvError\n"
        "from rock_env.sandbox import Sandbox\n"
        "try:\n"
        "    Sandbox(base_url='http://127.0.0.1:9')\n"
        "except RockEnvError as exc:\n"
        "    print(exc)\n"
        "assert 'rock_env.remote' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "the remote client is not available" in out.stdout
