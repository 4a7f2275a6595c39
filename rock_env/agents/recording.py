"""Recording and replay of model exchanges (JSONL, one :class:`ModelExchange` or :class:`RewardRecord` a line).

:class:`Recorder` appends each exchange as it ends (flushed per line, so a crash loses at most the
line being written). :class:`Replay` answers a request from a recording: by the request's content
(messages, tools, tool choice), so a replayed run need not have the same sandbox ids, order or
timing; identical requests get their recorded answers in recorded order.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rock_env.errors import ConfigError
from rock_env.protocol.model_service import ModelExchange, RewardRecord

#: the request fields a replay matches on (sampling parameters and ``stream`` may differ)
REPLAY_KEYS = ("messages", "tools", "tool_choice")


def request_key(body: dict[str, Any]) -> str:
    """The content key of a chat-completions request (see :data:`REPLAY_KEYS`)."""
    picked = {key: body.get(key) for key in REPLAY_KEYS}
    return hashlib.sha256(json.dumps(picked, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Recorder:
    """Appends exchanges and rewards to a JSONL file (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: ModelExchange | RewardRecord) -> None:
        """Append one line."""
        line = record.model_dump_json() + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()

    def write_reward(
        self, sandbox_id: str, episode: int, reward: float, info: dict[str, Any] | None, env_id: str | None
    ) -> None:
        """Append an episode's reward (a ``kind="reward"`` line, joinable with its exchanges)."""
        self.write(RewardRecord(sandbox_id=sandbox_id, env_id=env_id, episode=episode, reward=reward, info=info or {}))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


def read_recording(path: str | Path) -> list[ModelExchange | RewardRecord]:
    """Every line of a recording, parsed (a malformed line is a :class:`ConfigError` naming it)."""
    records: list[ModelExchange | RewardRecord] = []
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"replay={str(source)!r}: no such recording; record one with ModelService(record=...)")
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            kind = data.get("kind", "exchange")
            records.append(
                RewardRecord.model_validate(data) if kind == "reward" else ModelExchange.model_validate(data)
            )
        except (ValueError, ValidationError, AttributeError) as exc:
            raise ConfigError(f"{source}:{number} is not a recording line: {exc}") from None
    return records


class Replay:
    """Answers requests from a recording by their content (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._answers: dict[str, deque[ModelExchange]] = defaultdict(deque)
        for record in read_recording(path):
            if isinstance(record, ModelExchange) and record.response is not None:
                self._answers[request_key(record.request)].append(record)
        self._lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded completion for this request (each used once, in order), or None if none is left."""
        with self._lock:
            queue = self._answers.get(request_key(body))
            if not queue:
                return None
            record = queue.popleft() if len(queue) > 1 else queue[0]  # the last one answers repeats too
            return record.response


__all__ = ["REPLAY_KEYS", "Recorder", "Replay", "read_recording", "request_key"]
