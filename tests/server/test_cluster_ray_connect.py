"""The Ray connect helper shared by the admin and rollouts: init kwargs, fast and clear failures."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from rock_env.cluster import ray_connect
from rock_env.cluster.ray_connect import (
    LOOPBACK_ENV_VAR,
    gcs_host_port,
    import_ray,
    init_kwargs,
    init_ray,
    recorded_cluster,
)
from rock_env.errors import ConfigError, ServerUnavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_init_kwargs_start_a_private_head_only_for_local() -> None:
    local = init_kwargs("local", namespace="ns", temp_dir="~/r", num_cpus=2)
    assert local["address"] == "local" and local["include_dashboard"] is False and local["num_cpus"] == 2
    assert local["_temp_dir"].endswith("/r") and not local["_temp_dir"].startswith("~")
    assert local["namespace"] == "ns" and local["log_to_driver"] is False
    remote = init_kwargs("10.0.0.5:6379", temp_dir="/tmp/x", num_cpus=2)
    assert remote == {"address": "10.0.0.5:6379", "log_to_driver": False}  # no head settings for a join


def test_gcs_host_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no ray_current_cluster file here
    assert gcs_host_port("local") is None and gcs_host_port("auto") is None
    assert gcs_host_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert gcs_host_port("ray://[::1]:10001") == ("::1", 10001)
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:7000")
    assert gcs_host_port("auto") == ("10.1.2.3", 7000)


def test_an_unreachable_cluster_fails_at_once_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOPBACK_ENV_VAR, "0")
    port = free_port()  # nothing listens on it
    with pytest.raises(ServerUnavailable, match=rf"127.0.0.1:{port}.*Check cluster.address .*cluster.address=local"):
        init_ray(f"127.0.0.1:{port}")


def test_auto_with_a_stale_cluster_record_fails_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``ray start`` leaves ray_current_cluster behind; once that cluster is gone, ``auto`` must not hang."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setattr(ray_connect, "_gcs_server_running", lambda: False)
    port = free_port()
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    assert recorded_cluster() == f"127.0.0.1:{port}"
    assert gcs_host_port("auto") == ("127.0.0.1", port)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"ray_current_cluster .*remove it if that cluster is gone"):
        init_ray("auto")
    assert time.monotonic() - started < 10
    monkeypatch.setattr(ray_connect, "_gcs_server_running", lambda: True)  # Ray would join the running GCS
    assert recorded_cluster() is None


def test_missing_ray_is_a_config_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'rock-env\[ray\]'"):
        import_ray("auto")
