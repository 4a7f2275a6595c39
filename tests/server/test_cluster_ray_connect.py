"""The Ray connect helper shared by the admin and rollouts: init kwargs, fast and clear failures."""

from __future__ import annotations

import socket
import sys

import pytest

from rock_env.errors import ConfigError, ServerUnavailable
from rock_env.server.cluster.ray_connect import LOOPBACK_ENV_VAR, gcs_host_port, import_ray, init_kwargs, init_ray


def test_init_kwargs_start_a_private_head_only_for_local() -> None:
    local = init_kwargs("local", namespace="ns", temp_dir="~/r", num_cpus=2)
    assert local["address"] == "local" and local["include_dashboard"] is False and local["num_cpus"] == 2
    assert local["_temp_dir"].endswith("/r") and not local["_temp_dir"].startswith("~")
    assert local["namespace"] == "ns" and local["log_to_driver"] is False
    remote = init_kwargs("10.0.0.5:6379", temp_dir="/tmp/x", num_cpus=2)
    assert remote == {"address": "10.0.0.5:6379", "log_to_driver": False}  # no head settings for a join


def test_gcs_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert gcs_host_port("local") is None and gcs_host_port("auto") is None
    assert gcs_host_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert gcs_host_port("ray://[::1]:10001") == ("::1", 10001)
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:7000")
    assert gcs_host_port("auto") == ("10.1.2.3", 7000)


def test_an_unreachable_cluster_fails_at_once_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOPBACK_ENV_VAR, "0")
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnavailable, match=rf"127.0.0.1:{port}.*Check cluster.address .*cluster.address=local"):
        init_ray(f"127.0.0.1:{port}")


def test_missing_ray_is_a_config_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'rock-env\[ray\]'"):
        import_ray("auto")
