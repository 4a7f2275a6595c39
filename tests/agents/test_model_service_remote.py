"""Remote model services: a sandbox on a server's worker, its harness answered by a trainer through the admin.

A real uvicorn admin on 127.0.0.1 with two tokens; namespace sandboxes (network off) created with
``rock.Sandbox(base_url=..., model_service=...)``; the official ``openai`` client inside; the trainer
is the test, through ``ModelService.connect(base_url, token)``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.agents import AsyncModelService, ModelService, RemoteModelService, read_recording
from rock_env.errors import InvalidArgument, ModelRequestNotFound, SandboxNotFound
from rock_env.sandbox.gc import reap_bridge_dirs
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings, TokenSpec
from rock_env.server.testing import ServerProcess

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"

#: a harness on the official client: plain, streamed and tool-call requests, then one that the trainer fails
OPENAI_AGENT = r"""
import json, os, sys
sys.path.insert(0, "/workspace/pylib")
import openai
client = openai.OpenAI(max_retries=0)
tools = [{"type": "function", "function": {"name": "bash", "description": "run",
          "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}]
out = {"models": [m.id for m in client.models.list().data]}
r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "plain"}], temperature=0.5)
out["plain"] = r.choices[0].message.content
s = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "stream"}], stream=True)
out["stream"] = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "tool"}], tools=tools)
call = r.choices[0].message.tool_calls[0]
out["tool"] = [call.id, call.function.name, json.loads(call.function.arguments), r.choices[0].finish_reason]
try:
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail"}])
except openai.APIStatusError as exc:
    out["failed"] = exc.status_code
print("RESULT " + json.dumps(out))
"""

#: a harness with the standard library only: ``TURNS`` requests, printing each answer (or the HTTP error)
STDLIB_AGENT = r"""
import json, os, urllib.request as u, urllib.error as e
for turn in range(int(os.environ.get("TURNS", "1"))):
    body = json.dumps({"messages": [{"role": "user", "content": os.environ.get("WHO", "") + str(turn)}]}).encode()
    req = u.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", body, {"content-type": "application/json"})
    try:
        print(json.load(u.urlopen(req))["choices"][0]["message"]["content"])
    except e.HTTPError as exc:
        print("HTTP", exc.code, json.load(exc)["error"]["message"])
"""


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, agent_module_state: Path) -> Iterator[str]:
    """An admin with two tokens on a free loopback port (embedded worker), served from a thread."""
    settings = ServerSettings(
        data_dir=str(tmp_path_factory.mktemp("admin")),
        tokens=[TokenSpec(name="alice", token=ALICE), TokenSpec(name="bob", token=BOB)],
    )
    server = BackgroundServer(create_app(settings)).start()
    yield server.url
    server.stop()


def _hub_dirs() -> set[str]:
    return {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob(f"rock-env-ms-{os.getpid()}-*")}


def test_openai_client_through_the_admin(admin: str, openai_lib: Path, tmp_path: Path) -> None:
    recording = tmp_path / "exchanges.jsonl"
    with (
        ModelService.connect(admin, ALICE, timeout=60, record=recording) as svc,
        rock.Sandbox(base_url=admin, token=ALICE, runtime="namespace", model_service=svc) as sb,
    ):
        env = sb.run("echo $OPENAI_BASE_URL $OPENAI_API_KEY").output.split()
        assert env == ["http://127.0.0.1:18473/v1", f"rock-env-{sb.id}"]
        sb.write_file("pylib.tgz", openai_lib.read_bytes())
        assert sb.run("mkdir pylib && tar xzf pylib.tgz -C pylib && rm pylib.tgz").exit_code == 0
        sb.write_file("agent.py", OPENAI_AGENT)
        svc.begin_episode(sb.id, 2, env_id="test:Remote-v0")
        proc = sb.spawn("python3 agent.py")
        seen = []
        tool_call = {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}}
        for reply in (
            "plain answer",
            "streamed answer",
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        ):
            req = svc.get(timeout=60)
            seen.append(req)
            svc.answer(req.id, reply)
        req = svc.get(timeout=60)
        svc.fail(req.id, 429, "slow down")
        assert proc.wait(timeout=60) == 0, proc.output()
        result = json.loads(proc.output().split("RESULT ", 1)[1])
        assert svc.pending() == []
        svc.record_reward(sb.id, 2, 1.0, env_id="test:Remote-v0")
    assert result == {
        "models": ["rock-env"],
        "plain": "plain answer",
        "stream": "streamed answer",
        "tool": ["call_1", "bash", {"cmd": "ls"}, "tool_calls"],
        "failed": 429,
    }
    assert [r.turn for r in seen] == [0, 1, 2]
    assert {(r.sandbox_id, r.episode, r.env_id) for r in seen} == {(sb.id, 2, "test:Remote-v0")}
    assert seen[0].body["temperature"] == 0.5 and seen[1].stream and seen[2].tools
    assert all(r.id.endswith("@" + sb.id) for r in seen)
    # the trainer side recorded every exchange it answered or failed, joinable with the reward
    *exchanges, reward = read_recording(recording)
    assert [(e.turn, e.status, e.episode, e.env_id, e.sandbox_id) for e in exchanges] == [
        (turn, status, 2, "test:Remote-v0", sb.id) for turn, status in ((0, 200), (1, 200), (2, 200), (3, 429))
    ]
    assert exchanges[0].request["messages"] == [{"role": "user", "content": "plain"}]
    assert exchanges[1].response is not None
    assert exchanges[1].response["choices"][0]["message"]["content"] == "streamed answer"
    assert exchanges[3].response is None and exchanges[3].error == "slow down"
    assert (reward.sandbox_id, reward.episode, reward.reward) == (sb.id, 2, 1.0)


def test_two_sandboxes_reverse_order_and_owner_isolation(admin: str) -> None:
    alice = ModelService.connect(admin, ALICE)
    bob = ModelService.connect(admin, BOB)
    boxes = [rock.Sandbox(base_url=admin, token=ALICE, runtime="namespace", model_service=True) for _ in range(2)]
    try:
        procs = []
        for i, sb in enumerate(boxes):
            sb.write_file("a.py", STDLIB_AGENT)
            procs.append(sb.spawn("python3 a.py", env={"TURNS": "2", "WHO": f"sb{i}-"}))
        for turn in range(2):
            if turn == 0:
                batch = [alice.get(timeout=30) for _ in boxes]
            else:  # several at once
                batch = []
                while len(batch) < len(boxes):
                    batch += alice.get_many(len(boxes) - len(batch), timeout=30)
            assert {r.sandbox_id for r in batch} == {sb.id for sb in boxes}
            if turn == 0:  # bob sees none of alice's requests and cannot answer them
                with pytest.raises(TimeoutError):
                    bob.get(timeout=0.3)
                assert bob.pending() == [] and len(alice.pending()) == 2
                with pytest.raises(ModelRequestNotFound):
                    bob.answer(batch[0].id, "from bob")
                with pytest.raises(SandboxNotFound):
                    bob.get(timeout=1, sandbox_id=boxes[0].id)
            for req in reversed(batch):
                alice.answer(req.id, "echo " + req.messages[-1]["content"])
        for i, proc in enumerate(procs):
            assert proc.wait(timeout=30) == 0
            assert proc.output().split() == ["echo", f"sb{i}-0", "echo", f"sb{i}-1"]
    finally:
        for sb in boxes:
            sb.stop()
        alice.close()
        bob.close()


def test_timeout_unknown_ids_and_stop(admin: str) -> None:
    before = _hub_dirs()
    svc = RemoteModelService(admin, ALICE)
    with rock.Sandbox(base_url=admin, token=ALICE, runtime="namespace", model_service={"timeout": 0.5}) as sb:
        sb.write_file("a.py", STDLIB_AGENT)
        out = sb.exec(["python3", "a.py"], timeout=30).output
        assert out.startswith("HTTP 504") and "did not answer within 0.5s" in out
        assert svc.pending() == []
        for bad in ("mr-0123456789abcdef@" + sb.id, "mr-x@sbx-nope", "nonsense"):
            with pytest.raises(ModelRequestNotFound):
                svc.answer(bad, "late")
        resp = httpx.post(
            f"{admin}/api/v1/model-service/requests/mr-x@{sb.id}/answer",
            json={"reply": "x"},
            headers={"authorization": f"Bearer {ALICE}"},
        )
        assert resp.status_code == 404 and resp.json()["error"] == "ModelRequestNotFound"
        # a request pending when the sandbox stops is dropped; a get waiting for that sandbox raises
        sb.spawn("python3 a.py", env={"TURNS": "1"})
        req = svc.get(timeout=30, sandbox_id=sb.id)
        errors: list[BaseException] = []

        def wait_for_next() -> None:
            try:
                svc.get(timeout=30, sandbox_id=sb.id)
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait_for_next)
        waiter.start()
        time.sleep(0.3)
        sb.stop()
        waiter.join(30)
        assert not waiter.is_alive() and len(errors) == 1 and isinstance(errors[0], SandboxNotFound)
        with pytest.raises(ModelRequestNotFound):
            svc.answer(req.id, "too late")
    with ModelService() as local, pytest.raises(InvalidArgument, match=r"ModelService\.connect"):
        rock.Sandbox(base_url=admin, token=ALICE, model_service=local)
    with rock.Sandbox(base_url=admin, token=ALICE, runtime="namespace") as plain, pytest.raises(InvalidArgument):
        svc.get(timeout=0.1, sandbox_id=plain.start().id)
    svc.close()
    # the worker (this process's embedded one) keeps only its services' base dirs: no sandbox dir inside
    for name in _hub_dirs() - before:
        assert not any((Path(os.environ.get("TMPDIR", "/tmp")) / name).iterdir())


async def test_async_trainer(admin: str) -> None:
    async with AsyncModelService.connect(admin, ALICE) as svc:
        sb = rock.AsyncSandbox(base_url=admin, token=ALICE, runtime="namespace", model_service=svc)
        await sb.start()
        try:
            await sb.write_file("a.py", STDLIB_AGENT)
            proc = await sb.spawn("python3 a.py", env={"TURNS": "2"})
            for turn in range(2):
                req = await svc.get(timeout=30)
                assert req.sandbox_id == sb.id and req.turn == turn
                await svc.answer(req.id, f"a{turn}")
            assert await proc.wait(timeout=30) == 0
            assert (await proc.output()).split() == ["a0", "a1"]
        finally:
            await sb.stop()


def test_sandbox_on_a_peer_worker(tmp_path: Path, agent_state: Path) -> None:
    settings = ServerSettings(data_dir=str(tmp_path / "admin"), embedded_worker=False, token=ALICE)
    server = BackgroundServer(create_app(settings)).start()
    worker = ServerProcess.worker(server.url, tmp_path, env={"ROCK_ENV_TOKEN": ALICE})
    try:
        worker.start()
        deadline = time.monotonic() + 30
        while not httpx.get(f"{server.url}/api/v1/workers", headers={"authorization": f"Bearer {ALICE}"}).json()[
            "workers"
        ]:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)
        with (
            ModelService.connect(server.url, ALICE) as svc,
            rock.Sandbox(base_url=server.url, token=ALICE, runtime="namespace", model_service=svc) as sb,
        ):
            assert sb.placement is not None and sb.placement.worker_id != settings.worker_id
            sb.write_file("a.py", STDLIB_AGENT)
            proc = sb.spawn("python3 a.py", env={"TURNS": "3"})
            for turn in range(3):
                req = svc.get(timeout=30)
                assert (req.sandbox_id, req.turn) == (sb.id, turn)
                svc.answer(req.id, f"peer{turn}")
            assert proc.wait(timeout=30) == 0
            assert proc.output().split() == ["peer0", "peer1", "peer2"]
            with pytest.raises(ModelRequestNotFound):
                svc.answer(req.id, "again")
        worker_pid = worker.pid
    finally:
        worker.stop()
        server.stop()
    # the worker's model service (its socket dirs) went with it
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"rock-env-ms-{worker_pid}-*"))


def test_gc_removes_bridge_dirs_of_dead_owners(tmp_path: Path) -> None:
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"rock-env-ms-{dead.pid}-abc"
    live = tmp_path / f"rock-env-ms-{os.getpid()}-def"
    other = tmp_path / "rock-env-other"
    for d in (gone, live, other):
        (d / "sbx-1").mkdir(parents=True)
    assert reap_bridge_dirs(root=tmp_path, dry_run=True) == [f"would remove model-service dir {gone} (owner gone)"]
    assert gone.exists()
    assert reap_bridge_dirs(root=tmp_path) == [f"removed model-service dir {gone} (owner gone)"]
    assert not gone.exists() and live.exists() and other.exists()
