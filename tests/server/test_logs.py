"""Structured logs: ``server.log_format=json`` writes one JSON object per line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from rock_env.server.config import admin_settings, compose
from rock_env.server.logs import JsonFormatter, configure_logging


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("rock_env.test_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("worker %s lost", "w1", extra={"worker_id": "w1", "objects": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "worker w1 lost" and first["level"] == "warning" and first["logger"] == "rock_env.test_logs"
    assert first["worker_id"] == "w1" and first["objects"] == 3 and first["ts"].endswith("Z")
    assert "ValueError: boom" in second["exc"]


def test_configure_logging_switches_root_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", root.level)
    configure_logging("debug", "json")
    assert isinstance(handler.formatter, JsonFormatter) and root.level == logging.DEBUG


def test_log_format_override_reaches_settings() -> None:
    settings, _ = admin_settings(compose("serve_admin", ["server.log_format=json"]))
    assert settings.log_format == "json"
