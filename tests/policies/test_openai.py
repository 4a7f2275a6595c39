"""The openai policy against a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rock_env.config import compose_config
from rock_env.errors import RequestInvalid, ServerUnavailable, Unauthorized
from rock_env.policies.openai_chat import OpenAIChatPolicy, observation_text
from rock_env.rollout import read_jsonl, run_rollout
from tests.policies.fake_openai import FakeOpenAI, dead_url, last_user_text
from tests.rollout.helpers import LINE_ID, LineEnv, register_line_env, walk_to_target


@pytest.fixture(scope="module", autouse=True)
def line_env() -> str:
    return register_line_env()


def openai_cfg(url: str, *overrides: str) -> Any:
    return compose_config(
        [f"env.id={LINE_ID}", "policy=openai", f"policy.base_url={url}", "policy.model=fake-model",
         "policy.use_tools=false", "progress=false", *overrides]
    )  # fmt: skip


def text_walker(request: dict[str, Any]) -> str:
    """A 'model' that reads the board in the last message and answers with a move."""
    return "Let me think. " + walk_to_target(last_user_text(request).removesuffix("\nYour move."))


def test_rollout_with_a_chat_model(tmp_path: Path) -> None:
    with FakeOpenAI(text_walker) as server:
        cfg = openai_cfg(server.url, "episodes=4", "policy.temperature=0.3", "policy.max_tokens=64")
        result = run_rollout(cfg, tmp_path)
    assert all(ep.success for ep in result.episodes)
    first = server.requests[0]
    assert (first["model"], first["temperature"], first["max_tokens"]) == ("fake-model", 0.3, 64)
    assert "tools" not in first
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert first["messages"][0]["content"].endswith("\nYour move.")  # GEM's info["suffix"] is sent
    longest = max(server.requests, key=lambda r: len(r["messages"]))
    roles = [m["role"] for m in longest["messages"]]
    assert roles[:3] == ["user", "assistant", "user"] and roles[-1] == "user"
    actions = [r["action"] for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert all(a.startswith("Let me think. \\boxed{") for a in actions)  # the reply is the action
    assert len(server.requests) == sum(ep.length for ep in result.episodes)


def test_rerun_against_the_same_model_is_byte_identical(tmp_path: Path) -> None:
    with FakeOpenAI(text_walker) as server:
        for name in ("a", "b"):
            run_rollout(openai_cfg(server.url, "episodes=5", "num_envs=3"), tmp_path / name)
    for name in ("trajectories.jsonl", "episodes.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_garbage_replies_get_the_envs_invalid_action_handling(tmp_path: Path) -> None:
    with FakeOpenAI(lambda request: "I refuse to play.") as server:
        run_rollout(openai_cfg(server.url, "episodes=1"), tmp_path)
    steps = [r for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert len(steps) == 12 and all(s["reward"] == -0.1 for s in steps)
    assert steps[0]["observation"].startswith("Invalid action 'I refuse to play.'")


def test_dead_model_server_is_a_clear_error(tmp_path: Path) -> None:
    url = dead_url()
    with pytest.raises(ServerUnavailable) as info:
        run_rollout(openai_cfg(url, "episodes=2", "policy.max_retries=1"), tmp_path)
    assert f"{url}/chat/completions" in str(info.value) and "policy.base_url" in str(info.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["episodes"] == 0
    assert read_jsonl(tmp_path / "episodes.jsonl") == []


def test_server_dying_midway_keeps_finished_episodes(tmp_path: Path) -> None:
    calls = {"n": 0}

    def dies(request: dict[str, Any]) -> str | int:
        calls["n"] += 1
        return text_walker(request) if calls["n"] <= 25 else 503

    with FakeOpenAI(dies) as server, pytest.raises(ServerUnavailable, match="HTTP 503"):
        run_rollout(openai_cfg(server.url, "episodes=20", "policy.max_retries=0"), tmp_path)
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert 0 < len(episodes) < 20 and all(e["success"] for e in episodes)
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line is complete JSON
    assert json.loads(lines[-1])["type"] == "episode"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["episodes"] == len(episodes)


@pytest.mark.parametrize(("status", "error"), [(401, Unauthorized), (400, RequestInvalid)])
def test_http_errors_are_typed(status: int, error: type[Exception]) -> None:
    env = LineEnv()
    with FakeOpenAI(lambda request: status) as server:
        policy = OpenAIChatPolicy("m", server.url, api_key="sk-test", max_retries=0)
        try:
            obs, info = env.reset(seed=0)
            policy.reset(env, obs, info)
            with pytest.raises(error):
                policy.act(env, obs, info)
        finally:
            policy.close()
            env.close()
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_retries_after_a_5xx_and_sums_usage() -> None:
    replies: list[Any] = [500, "\\boxed{left}"]
    env = LineEnv()
    with FakeOpenAI(lambda request: replies.pop(0)) as server:
        policy = OpenAIChatPolicy("m", server.url, max_retries=1, system_prompt="Be brief.")
        try:
            obs, info = env.reset(seed=0)
            policy.reset(env, obs, info)
            assert policy.act(env, obs, info) == "\\boxed{left}"
        finally:
            policy.close()
            env.close()
    assert len(server.requests) == 2 and policy.usage["total_tokens"] == 12
    assert server.requests[1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_max_history_keeps_the_first_observation_and_recent_turns() -> None:
    env = LineEnv(max_turns=50)
    with FakeOpenAI(lambda request: "\\boxed{left}") as server:
        policy = OpenAIChatPolicy("m", server.url, max_history=2)
        try:
            obs, info = env.reset(seed=0)
            policy.reset(env, obs, info)
            for _ in range(6):
                action = policy.act(env, obs, info)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
        finally:
            policy.close()
            env.close()
    last = server.requests[-1]["messages"]
    assert last[0]["content"].startswith("Move P onto T")
    assert [m["role"] for m in last[1:]] == ["assistant", "user", "assistant", "user"]


def test_observation_text() -> None:
    assert observation_text("board", {"suffix": "Your move."}) == "board\nYour move."
    assert observation_text("board\n", {"suffix": "Your move.", "prefix": "> "}) == "> board\nYour move."
    assert observation_text("board", {}) == "board"


def test_sokoban_board_from_the_suffix_reaches_the_model(tmp_path: Path) -> None:
    with FakeOpenAI(lambda request: "\\boxed{up}") as server:
        cfg = compose_config(
            ["env=sokoban_easy", "policy=openai", f"policy.base_url={server.url}", "episodes=1", "progress=false"]
        )
        run_rollout(cfg, tmp_path)
    first = server.requests[0]["messages"][0]["content"]
    reset = read_jsonl(tmp_path / "trajectories.jsonl")[0]
    assert first.startswith(reset["observation"]) and first.endswith(reset["info"]["suffix"])
    assert "#" in reset["info"]["suffix"]  # the board is in the suffix, not in the observation
