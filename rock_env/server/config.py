"""Composing the Hydra configs of ``rock-env admin start`` and ``rock-env worker start``.

The groups live in ``rock_env/conf``: ``server/``, ``worker/``, ``limits/`` (ours) and
``runtime/`` (sandbox defaults, shared with the rollout command). Any key can be
overridden on the command line (``server.port=9000 runtime=docker limits=small``).
"""

from __future__ import annotations

from typing import Any

from rock_env.errors import ConfigError
from rock_env.server.settings import ServerSettings, settings_from

#: Keys of the ``server`` group that are not ServerSettings fields.
_CLI_ONLY = {"port_file"}


def compose(config_name: str, overrides: list[str]) -> dict[str, Any]:
    """Compose ``rock_env/conf/<config_name>.yaml`` with ``overrides`` into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="rock_env.conf", version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad override in {' '.join(overrides) or '(none)'}: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return {str(k): v for k, v in data.items()}


def _runtime_defaults(runtime: dict[str, Any] | None) -> dict[str, Any]:
    """The ``runtime`` group as SandboxConfig defaults (``name`` -> ``runtime``)."""
    out = {k: v for k, v in (runtime or {}).items() if v is not None}
    if "name" in out:
        out["runtime"] = out.pop("name")
    return out


def admin_settings(cfg: dict[str, Any]) -> tuple[ServerSettings, dict[str, Any]]:
    """ServerSettings of the admin, plus the CLI-only keys (``port_file``)."""
    server = dict(cfg.get("server") or {})
    extra = {k: server.pop(k) for k in list(server) if k in _CLI_ONLY}
    worker = cfg.get("worker") or {}
    server["limits"] = cfg.get("limits") or {}
    server["runtime"] = _runtime_defaults(cfg.get("runtime"))
    server["slots"] = worker.get("slots", 4096)
    server["worker_id"] = worker.get("id") or "embedded"
    server["heartbeat_interval"] = worker.get("heartbeat_interval", 2.0)
    server["allow_local_runtime"] = bool(worker.get("allow_local_runtime", False))
    server["data_dirs"] = list(worker.get("data_dirs") or [])
    return settings_from(server), extra


def worker_settings(cfg: dict[str, Any]) -> tuple[ServerSettings, dict[str, Any]]:
    """ServerSettings of a standalone worker, plus its own keys (admin_url, advertise_url, ...)."""
    worker = dict(cfg.get("worker") or {})
    if not worker.get("admin_url"):
        raise ConfigError("a worker needs the admin's URL: rock-env worker start --admin http://HOST:8080")
    settings = settings_from(
        {
            "host": worker.get("host", "127.0.0.1"),
            "port": worker.get("port", 0),
            "token": worker.get("token"),
            "slots": worker.get("slots", 4096),
            "worker_id": worker.get("id") or "worker",
            "heartbeat_interval": worker.get("heartbeat_interval", 2.0),
            "runtime": _runtime_defaults(cfg.get("runtime")),
            "embedded_worker": True,
            "log_level": worker.get("log_level", "info"),
            "log_format": worker.get("log_format", "text"),
            "allow_local_runtime": bool(worker.get("allow_local_runtime", False)),
            "data_dirs": list(worker.get("data_dirs") or []),
        }
    )
    return settings, worker
