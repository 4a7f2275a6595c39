"""The model service end to end: the official ``openai`` client inside sandboxes, answered by the trainer.

Every test uses real sandboxes (local, bubblewrap namespaces, Docker) and the real client from PyPI;
the trainer side is the test, answering from a script.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from rock_env.agents import ModelService
from rock_env.agents.model_service import MAX_CONNECTIONS
from rock_env.errors import InvalidArgument, ModelRequestNotFound
from rock_env.sandbox import Sandbox

RUNTIMES = [
    "local",
    pytest.param("namespace", marks=pytest.mark.bwrap),
    pytest.param("docker", marks=pytest.mark.docker),
]

#: a harness built on the official client: plain, streamed, tool-call (plain and streamed) requests
OPENAI_AGENT = r"""
import json, os, sys
if os.environ.get("PYLIB"):
    sys.path.insert(0, os.environ["PYLIB"])
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
s = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "stool"}], tools=tools,
                                   stream=True, stream_options={"include_usage": True})
calls, finish = {}, None
for c in s:
    for ch in c.choices:
        finish = ch.finish_reason or finish
        for d in ch.delta.tool_calls or []:
            e = calls.setdefault(d.index, {"name": "", "arguments": ""})
            e["name"] += d.function.name or ""
            e["arguments"] += d.function.arguments or ""
out["stream_tool"] = [calls[0]["name"], json.loads(calls[0]["arguments"]), finish]
try:
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail"}])
except openai.APIStatusError as exc:
    out["failed"] = exc.status_code
print("RESULT " + json.dumps(out))
"""


def _python(runtime: str) -> str:
    return sys.executable if runtime == "local" else "python3"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_openai_client_in_sandbox(
    runtime: str, openai_lib: Path, agent_state: Path, request: pytest.FixtureRequest
) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_image")
    with ModelService(timeout=60) as svc, Sandbox(runtime=runtime, model_service=svc) as sb:
        sb.write_file("agent.py", OPENAI_AGENT)
        env = sb.run("echo $OPENAI_BASE_URL $OPENAI_API_KEY").output.split()
        assert env[0].startswith("http://127.0.0.1:") and env[0].endswith("/v1")
        assert env[1] == f"rock-env-{sb.id}"
        pylib = ""  # local: the venv's python has openai
        if runtime != "local":  # the sandbox's own python3 gets the client as uploaded files
            sb.write_file("pylib.tgz", openai_lib.read_bytes())
            assert sb.run("mkdir pylib && tar xzf pylib.tgz -C pylib && rm pylib.tgz").exit_code == 0
            pylib = "/workspace/pylib"
        proc = sb.spawn(f"{_python(runtime)} agent.py", env={"PYLIB": pylib})
        svc.begin_episode(sb.id, 3, env_id="test:Agent-v0")
        seen = []
        for reply in (
            "plain answer",
            "streamed answer",
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}}
                ],
            },
            {"tool_calls": [{"function": {"name": "bash", "arguments": {"cmd": "pwd"}}}]},
        ):
            req = svc.get(timeout=60)
            seen.append(req)
            svc.answer(req.id, reply)
        req = svc.get(timeout=60)
        svc.fail(req.id, 429, "slow down")
        assert proc.wait(timeout=60) == 0, proc.output()
        result = json.loads(proc.output().split("RESULT ", 1)[1])
    assert result["models"] == ["rock-env"]
    assert result["plain"] == "plain answer"
    assert result["stream"] == "streamed answer"
    assert result["tool"] == ["call_1", "bash", {"cmd": "ls"}, "tool_calls"]
    assert result["stream_tool"] == ["bash", {"cmd": "pwd"}, "tool_calls"]
    assert result["failed"] == 429
    assert [r.turn for r in seen] == [0, 1, 2, 3]
    assert {(r.sandbox_id, r.episode, r.env_id) for r in seen} == {(sb.id, 3, "test:Agent-v0")}
    assert seen[0].body["temperature"] == 0.5 and not seen[0].stream
    assert seen[1].stream and seen[2].tools and seen[2].tools[0]["function"]["name"] == "bash"


NET_PROBE = r"""
import os, socket, urllib.request
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("192.0.2.1", 80)); print("EGRESS")
except OSError as exc:
    print("no egress:", exc)
print(open("/proc/net/dev").read().count(":") - 0, "interfaces")
print(urllib.request.urlopen(os.environ["OPENAI_BASE_URL"] + "/models").read().decode())
"""


@pytest.mark.parametrize(
    "runtime", [pytest.param("namespace", marks=pytest.mark.bwrap), pytest.param("docker", marks=pytest.mark.docker)]
)
def test_network_stays_off(runtime: str, agent_state: Path, request: pytest.FixtureRequest) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_image")
    with ModelService() as svc, Sandbox(runtime=runtime, model_service=svc) as sb:
        sb.write_file("probe.py", NET_PROBE)
        out = sb.exec(["python3", "probe.py"]).output
        assert "no egress" in out and "EGRESS" not in out
        assert "1 interfaces" in out  # only lo
        assert '"id":"rock-env"' in out
        # the bridge dir is read-only: the sandbox cannot replace the socket
        assert sb.run("rm -f /run/rock-env-bridge/model.sock; echo x > /run/rock-env-bridge/y").exit_code != 0


def test_many_sandboxes_answered_in_any_order(agent_state: Path) -> None:
    agent = (
        "import json, os, urllib.request as u\n"
        "for turn in range(3):\n"
        "    body = json.dumps({'messages': [{'role': 'user', 'content': os.environ['WHO'] + str(turn)}]}).encode()\n"
        "    r = u.urlopen(u.Request(os.environ['OPENAI_BASE_URL'] + '/chat/completions', body, {'content-type': 'application/json'}))\n"
        "    print(json.load(r)['choices'][0]['message']['content'])\n"
    )
    with ModelService() as svc:
        boxes = [Sandbox(runtime="local", model_service=svc).start() for _ in range(4)]
        try:
            procs = []
            for i, sb in enumerate(boxes):
                sb.write_file("a.py", agent)
                procs.append(sb.spawn(f"{_python('local')} a.py", env={"WHO": f"sb{i}-"}))
            for _ in range(3):
                batch = [svc.get(timeout=30) for _ in boxes]
                for req in reversed(batch):  # answer in reverse order
                    svc.answer(req.id, "echo " + req.messages[-1]["content"])
            for i, proc in enumerate(procs):
                assert proc.wait(timeout=30) == 0
                assert proc.output().split() == ["echo", f"sb{i}-0", "echo", f"sb{i}-1", "echo", f"sb{i}-2"]
            assert svc.pending() == []
        finally:
            for sb in boxes:
                sb.stop()
        assert svc.sandboxes == []


def test_get_of_one_sandbox_and_pending(agent_state: Path) -> None:
    agent = (
        "import json, os, urllib.request as u\n"
        "body = json.dumps({'messages': [{'role': 'user', 'content': 'q'}]}).encode()\n"
        "r = u.urlopen(u.Request(os.environ['OPENAI_BASE_URL'] + '/chat/completions', body))\n"
        "print(json.load(r)['choices'][0]['message']['content'])\n"
    )
    with (
        ModelService() as svc,
        Sandbox(runtime="local", model_service=svc) as a,
        Sandbox(runtime="local", model_service=svc) as b,
    ):
        for sb in (a, b):
            sb.write_file("a.py", agent)
        pa = a.spawn(f"{_python('local')} a.py")
        pb = b.spawn(f"{_python('local')} a.py")
        req_b = svc.get(timeout=30, sandbox_id=b.id)
        assert req_b.sandbox_id == b.id
        svc.answer(req_b.id, "to b")
        assert pb.wait(timeout=30) == 0 and pb.output().strip() == "to b"
        waiting = threading.Event()
        threading.Thread(target=lambda: (svc.get(timeout=30, sandbox_id=a.id), waiting.set()), daemon=True).start()
        assert waiting.wait(30)
        (req_a,) = svc.pending()
        assert req_a.sandbox_id == a.id
        with pytest.raises(InvalidArgument):
            svc.answer(req_a.id, {"role": "user", "content": "x"})  # not an assistant message: stays pending
        svc.answer(req_a.id, "to a")
        with pytest.raises(ModelRequestNotFound):
            svc.answer(req_a.id, "again")
        assert pa.wait(timeout=30) == 0 and pa.output().strip() == "to a"
        with pytest.raises(TimeoutError):
            svc.get(timeout=0.05)


def test_unanswered_request_times_out_and_bad_requests(agent_state: Path) -> None:
    agent = (
        "import json, os, urllib.request as u, urllib.error as e\n"
        "url = os.environ['OPENAI_BASE_URL']\n"
        "def post(data):\n"
        "    try:\n"
        "        return u.urlopen(u.Request(url + '/chat/completions', data)).status\n"
        "    except e.HTTPError as exc:\n"
        "        return exc.code, json.load(exc)['error']['message']\n"
        "print(json.dumps([post(b'not json'), post(b'{\"messages\": []}'),\n"
        "                  post(json.dumps({'messages': [{'role': 'user', 'content': 'x'}]}).encode())]))\n"
    )
    with ModelService(timeout=0.5) as svc, Sandbox(runtime="local", model_service=svc) as sb:
        sb.write_file("a.py", agent)
        result = sb.exec([_python("local"), "a.py"], timeout=30)
        assert result.exit_code == 0, result.output
        bad_json, empty, timed_out = json.loads(result.output)
        assert bad_json[0] == 400 and "not JSON" in bad_json[1]
        assert empty[0] == 400 and "messages" in empty[1]
        assert timed_out[0] == 504 and "did not answer within 0.5s" in timed_out[1]
        assert svc.pending() == []


@pytest.mark.bwrap
def test_stop_releases_everything_and_forwarder_restarts(agent_state: Path) -> None:
    with ModelService() as svc:
        sb = Sandbox(runtime="namespace", model_service=svc).start()
        bridge_dir = svc._base / sb.id
        assert (bridge_dir / "model.sock").exists()
        pid = sb.run("pgrep -f forwarder.py").output.split()
        assert len(pid) == 1
        sb.run(f"kill -9 {pid[0]}")
        assert sb._forwarder is not None and sb._forwarder.wait(timeout=10) is not None
        # the next command restarts it
        out = sb.exec(
            [
                "python3",
                "-c",
                "import os,urllib.request as u;print(u.urlopen(os.environ['OPENAI_BASE_URL']+'/models').status)",
            ]
        )
        assert out.output.strip() == "200"
        sb.write_file(
            "a.py",
            'import os,urllib.request as u;u.urlopen(u.Request(os.environ[\'OPENAI_BASE_URL\']+\'/chat/completions\', b\'{"messages":[{"role":"user","content":"x"}]}\'))',
        )
        sb.spawn("python3 a.py")
        req = svc.get(timeout=30)
        sb.stop()
        assert not bridge_dir.exists()
        assert svc.sandboxes == [] and svc.pending() == []
        with pytest.raises(ModelRequestNotFound):
            svc.answer(req.id, "too late")
    assert not svc._base.exists()


@pytest.mark.bwrap
def test_a_sandbox_cannot_hold_more_connections_than_the_cap(agent_state: Path) -> None:
    """A sandbox opening many idle connections gets 429 past the cap (host fds and memory stay bounded)
    and its endpoint works again once it closes them."""
    agent = (
        "import json, os, socket, urllib.request as u\n"
        "host, port = os.environ['OPENAI_BASE_URL'].split('//')[1].split('/')[0].split(':')\n"
        f"socks = [socket.create_connection((host, int(port))) for _ in range({MAX_CONNECTIONS} + 4)]\n"
        "refused = 0\n"
        "for s in socks:\n"
        "    s.settimeout(0.5)\n"
        "    try:\n"
        "        refused += s.recv(64).startswith(b'HTTP/1.1 429')\n"
        "    except socket.timeout:\n"
        "        pass\n"
        "for s in socks:\n"
        "    s.close()\n"
        "print(refused)\n"
        "print(u.urlopen(os.environ['OPENAI_BASE_URL'] + '/models').status)\n"
    )
    with ModelService() as svc, Sandbox(runtime="namespace", model_service=svc) as sb:
        sb.write_file("a.py", agent)
        result = sb.exec(["python3", "a.py"], timeout=60)
        assert result.exit_code == 0, result.output
        refused, status = result.output.split()
        assert int(refused) >= 4 and status == "200", result.output
