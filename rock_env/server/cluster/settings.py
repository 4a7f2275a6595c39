"""Settings of the admin's Ray backend, from the Hydra groups ``cluster`` and ``ray_workers``.

``cluster`` is shared with ``rock-env rollout`` (``name``, ``address``; its rollout-only keys
``workers``, ``cpus_per_worker`` and ``max_retries`` are ignored here); the admin-only knobs
live in ``ray_workers`` (``rock_env/conf/ray_workers/default.yaml``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rock_env.config.schema import ROLLOUT_ONLY_CLUSTER_KEYS
from rock_env.errors import ConfigError
from rock_env.protocol import describe_errors

logger = logging.getLogger(__name__)


class RayClusterSettings(BaseModel):
    """How the admin uses a Ray cluster."""

    model_config = ConfigDict(extra="forbid")

    #: ``auto``: the running cluster (``$RAY_ADDRESS`` or the one ``ray start`` made on this host);
    #: ``local``: start a private Ray head on 127.0.0.1 inside the admin; else ``HOST:PORT`` of the GCS.
    address: str = Field(default="auto", min_length=1)
    #: Seconds between two looks at ``ray.nodes()`` and the actors.
    poll_interval: float = Field(default=1.0, gt=0)
    #: Slots of each actor's worker (``None``: ``worker.slots``).
    slots: int | None = Field(default=None, ge=1)
    #: Ray namespace of the named worker actors (``rock-env-worker-<worker id>``).
    namespace: str = Field(default="rock-env", min_length=1)
    #: CPUs each actor reserves from Ray (0: it never keeps other Ray work from running).
    num_cpus: float = Field(default=0.0, ge=0)
    #: An actor whose worker has not registered this long after it was started is replaced.
    start_timeout: float = Field(default=120.0, gt=0)
    #: First wait before retrying a node whose actor failed to start (doubles up to 60 s).
    restart_backoff: float = Field(default=2.0, ge=0)
    #: Ray's temp/session dir for ``address=local`` (``None``: Ray's default, /tmp/ray); keep it short,
    #: Ray's socket paths under it must fit in 107 bytes.
    temp_dir: str | None = Field(default=None, max_length=60)
    #: The admin URL the actors register with (``None``: the admin's bound address, or the
    #: admin node's Ray IP when it listens on all interfaces).
    admin_url: str | None = None

    @property
    def is_local_head(self) -> bool:
        """Whether the admin starts its own Ray head."""
        return self.address == "local"


def cluster_settings(cfg: dict[str, Any]) -> RayClusterSettings | None:
    """The Ray settings of a composed ``serve_admin`` config, or ``None`` for ``cluster=local``."""
    cluster = dict(cfg.get("cluster") or {})
    name = cluster.pop("name", "local")
    if name == "local":
        return None
    if name != "ray":
        raise ConfigError(f"unknown cluster {name!r} for the admin: use cluster=local or cluster=ray.")
    ignored = sorted(k for k in ROLLOUT_ONLY_CLUSTER_KEYS if cluster.pop(k, None) is not None)
    if ignored:
        logger.warning("the admin ignores the rollout-only keys cluster.%s", ", cluster.".join(ignored))
    data = {**dict(cfg.get("ray_workers") or {}), **{k: v for k, v in cluster.items() if v is not None}}
    try:
        return RayClusterSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid Ray cluster settings (cluster.*, ray_workers.*): {describe_errors(exc.errors())}"
        ) from exc
