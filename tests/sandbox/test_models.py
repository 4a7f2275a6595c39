"""SandboxConfig validation and the size parser."""

from __future__ import annotations

import pytest

from rock_env.errors import ConfigError
from rock_env.sandbox.models import CommandResult, SandboxConfig, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 << 20), ("2g", 2 << 30), ("1GiB", 1 << 30), ("64MB", 64 << 20), ("1024", 1024), (4096, 4096)],
)
def test_parse_size_accepts_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["8gb?", "lots", "-1", "", "1.5.2g", "0", 0, -5, True])
def test_parse_size_rejects_malformed(bad: str | int) -> None:
    with pytest.raises(ConfigError, match="size"):
        parse_size(bad)


def test_config_malformed_memory_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"memory.*'8gb\?'"):
        SandboxConfig(memory="8gb?")


def test_config_rejects_unknown_fields_and_runtimes() -> None:
    with pytest.raises(ConfigError, match="memroy"):
        SandboxConfig(memroy="1g")
    with pytest.raises(ConfigError, match="runtime"):
        SandboxConfig(runtime="vm")
    with pytest.raises(ConfigError, match="workdir"):
        SandboxConfig(workdir="relative/dir")


def test_config_round_trips_as_json() -> None:
    config = SandboxConfig(memory="256m", disk="1g", cpus=0.5, pids=64, env={"A": "1"}, ttl=30)
    again = SandboxConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.memory_bytes == 256 << 20 and again.disk_bytes == 1 << 30


def test_command_result_ok() -> None:
    assert CommandResult(output="", exit_code=0, duration=0.0).ok
    assert not CommandResult(output="", exit_code=None, duration=1.0, timed_out=True).ok
