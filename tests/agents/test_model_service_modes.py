"""Pass-through to an upstream server, recording and replay, the async API, and the completion format."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from rock_env.agents import AsyncModelService, ModelService
from rock_env.agents.model_completion import completion_chunks, completion_from_reply
from rock_env.agents.recording import read_recording
from rock_env.errors import ConfigError, InvalidArgument
from rock_env.protocol.model_service import ModelExchange, ModelRequest, RewardRecord
from rock_env.sandbox import AsyncSandbox, Sandbox
from tests.policies.fake_openai import FakeOpenAI

PYTHON = str(Path(os.__file__).parents[2] / "bin" / "python3")

#: a harness that talks a few turns and prints what it got (its transcript)
CHAT_AGENT = r"""
import json, os, urllib.request as u, urllib.error as e
messages = [{"role": "system", "content": "be brief"}]
for turn in range(3):
    messages.append({"role": "user", "content": f"question {turn}"})
    req = u.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions",
                    json.dumps({"model": "up", "messages": messages}).encode(),
                    {"authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    try:
        answer = json.load(u.urlopen(req))["choices"][0]["message"]
    except e.HTTPError as exc:
        print("HTTP", exc.code, json.load(exc)["error"]["message"]); break
    messages.append({"role": "assistant", "content": answer["content"]})
    print("ANSWER", answer["content"])
"""


def _script(body: dict[str, Any]) -> str:
    return "upstream says " + body["messages"][-1]["content"]


def _run_agent(svc: ModelService) -> list[str]:
    with Sandbox(runtime="local", model_service=svc) as sb:
        sb.write_file("agent.py", CHAT_AGENT)
        result = sb.exec([PYTHON, "agent.py"], timeout=60)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_pass_through_record_and_replay(agent_state: Path, tmp_path: Path) -> None:
    recording = tmp_path / "rec.jsonl"
    seen: list[ModelRequest] = []

    def hook(request: ModelRequest, completion: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(request)
        if request.turn == 1:
            return {"role": "assistant", "content": "rewritten by the trainer"}
        return None

    with (
        FakeOpenAI(_script) as upstream,
        ModelService(upstream=upstream.url, upstream_api_key="sk-up", on_exchange=hook, record=recording) as svc,
    ):
        first = _run_agent(svc)
        svc.record_reward(seen[0].sandbox_id, 0, 1.0, {"solved": True})
    assert first == [
        "ANSWER upstream says question 0",
        "ANSWER rewritten by the trainer",
        "ANSWER upstream says question 2",
    ]
    assert (
        len(upstream.requests) == 3
        and {k.lower(): v for k, v in upstream.headers[0].items()}["authorization"] == "Bearer sk-up"
    )
    assert [r.turn for r in seen] == [0, 1, 2]
    records = read_recording(recording)
    exchanges = [r for r in records if isinstance(r, ModelExchange)]
    assert [r.turn for r in exchanges] == [0, 1, 2]
    assert {r.source for r in exchanges} == {"upstream"} and all(r.latency >= 0 for r in exchanges)
    assert exchanges[1].response is not None
    assert exchanges[1].response["choices"][0]["message"]["content"] == "rewritten by the trainer"
    (reward,) = [r for r in records if isinstance(r, RewardRecord)]
    assert (reward.sandbox_id, reward.episode, reward.reward) == (exchanges[0].sandbox_id, 0, 1.0)
    # replay: the same transcript with no upstream and no trainer
    with ModelService(replay=recording, timeout=5) as svc:
        assert _run_agent(svc) == first


def test_replay_without_a_match_and_bad_recording(agent_state: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with ModelService(replay=empty) as svc:
        out = _run_agent(svc)
    assert out[0].startswith("HTTP 404") and "matches this request" in out[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        ModelService(replay=bad)
    with pytest.raises(InvalidArgument):
        ModelService(upstream="http://x/v1", replay=empty)


def test_upstream_down_is_a_clear_error(agent_state: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with ModelService(upstream=f"http://127.0.0.1:{port}/v1", timeout=5) as svc:
        out = _run_agent(svc)
    assert out[0].startswith("HTTP 502") and "unreachable" in out[0] and str(port) in out[0]


async def test_async_api(agent_state: Path) -> None:
    async with AsyncModelService() as svc:
        boxes = [AsyncSandbox(runtime="local", model_service=svc) for _ in range(3)]
        for sb in boxes:
            await sb.start()
        try:
            procs = []
            for sb in boxes:
                await sb.write_file("agent.py", CHAT_AGENT)
                procs.append(await sb.spawn(f"{PYTHON} agent.py"))
            for sb in boxes:
                svc.begin_episode(sb.id, 7)

            async def trainer() -> None:
                for _ in range(3 * len(boxes)):
                    req = await svc.get(timeout=30)
                    assert req.episode == 7
                    await svc.answer(req.id, f"{req.sandbox_id} turn {req.turn}")

            await trainer()
            with pytest.raises(TimeoutError):
                await svc.get(timeout=0.05)
            for sb, proc in zip(boxes, procs, strict=True):
                assert await proc.wait(timeout=30) == 0
                out = (await proc.output()).splitlines()
                assert out == [f"ANSWER {sb.id} turn {t}" for t in range(3)]
        finally:
            for sb in boxes:
                await sb.stop()


async def test_async_get_cancelled_does_not_lose_a_request(agent_state: Path) -> None:
    async with AsyncModelService() as svc, AsyncSandbox(runtime="local", model_service=svc) as sb:
        await sb.write_file("agent.py", CHAT_AGENT)
        proc = await sb.spawn(f"{PYTHON} agent.py")
        task = asyncio.ensure_future(svc.get(timeout=30))
        await asyncio.sleep(0)
        task.cancel()
        for turn in range(3):
            req = await svc.get(timeout=30)
            assert req.turn == turn
            await svc.answer(req.id, "ok")
        assert await proc.wait(timeout=30) == 0


def test_completion_objects() -> None:
    plain = completion_from_reply("hi", model="m")
    assert plain["object"] == "chat.completion" and plain["choices"][0]["finish_reason"] == "stop"
    tool = completion_from_reply({"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}, model="m")
    call = tool["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["arguments"] == '{"a": 1}' and call["id"].startswith("call_")
    assert tool["choices"][0]["finish_reason"] == "tool_calls"
    full = completion_from_reply(
        {"id": "x", "choices": [{"message": {"role": "assistant", "content": "y"}}]}, model="m"
    )
    assert full["id"] == "x" and full["model"] == "m"
    chunks = completion_chunks(tool, include_usage=True)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and chunks[-1]["choices"] == []
    for bad in (
        3,
        {"role": "user", "content": "x"},
        {"content": None},
        {"tool_calls": [{"function": {}}]},
        {"choices": []},
    ):
        with pytest.raises(InvalidArgument):
            completion_from_reply(bad, model="m")  # type: ignore[arg-type]
    json.dumps(chunks)


def test_remote_sandbox_refuses_a_model_service_clearly() -> None:
    import rock_env as rock

    with ModelService() as svc, pytest.raises(InvalidArgument, match="remote sandbox"):
        rock.Sandbox(base_url="http://127.0.0.1:9", model_service=svc)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        ModelService(timeout=0)
    with pytest.raises(InvalidArgument, match="upstream"):
        ModelService(upstream="localhost:8000")
    with pytest.raises(InvalidArgument, match="model_service must be"):
        Sandbox(runtime="local", model_service=object())  # type: ignore[arg-type]
