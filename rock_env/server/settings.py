"""Settings of the admin and worker processes (built from the Hydra groups server/worker/limits)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rock_env.cluster.net import is_loopback
from rock_env.errors import ConfigError
from rock_env.protocol import DEFAULT_MAX_BODY, describe_errors

TOKEN_ENV_VAR = "ROCK_ENV_TOKEN"


#: Default quotas of every token (and of anonymous loopback use): one client cannot fill the cluster.
DEFAULT_MAX_ENVS = 1024
DEFAULT_MAX_SANDBOXES = 64
DEFAULT_MAX_VEC_ENVS = 4096
DEFAULT_MAX_VEC_WORKERS = 32

#: ROCK image names without a local image -> the local image to use (glob patterns; rock_env.server.rock_image).
DEFAULT_ROCK_IMAGE_MAP = {
    pattern: "rock-env/base:bookworm"
    for pattern in ("python", "python:3", "python:3.*", "python:3-*", "debian", "debian:*", "ubuntu", "ubuntu:*")
}


class Limits(BaseModel):
    """Quotas of one token: how much it may hold at once; ``None``: unlimited.

    On by default (:data:`DEFAULT_MAX_ENVS` and friends) so that one client cannot take every
    slot of the cluster. Set globally with ``limits.max_envs=...`` (``null`` turns one off) or
    per token in ``server.tokens[].limits``; a token's limits override only the fields they set.
    """

    model_config = ConfigDict(extra="forbid")

    max_envs: int | None = Field(default=DEFAULT_MAX_ENVS, ge=0, description="live single envs")
    max_sandboxes: int | None = Field(default=DEFAULT_MAX_SANDBOXES, ge=0, description="live sandboxes")
    max_vec_envs: int | None = Field(
        default=DEFAULT_MAX_VEC_ENVS, ge=0, description="live sub-envs of vector envs, all vector envs together"
    )
    max_vec_workers: int | None = Field(
        default=DEFAULT_MAX_VEC_WORKERS, ge=0, description="worker processes of live async vector envs, together"
    )


class TokenSpec(BaseModel):
    """One API token, its name (shown in logs and metrics, never the token) and its quotas."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    token: str = Field(min_length=8)
    limits: Limits | None = None


class ServerSettings(BaseModel):
    """Everything an admin (or worker) process needs to serve."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: str = "~/.rock-env/admin"
    #: A single API token (or ``$ROCK_ENV_TOKEN``); more tokens with their own quotas in ``tokens``.
    token: str | None = None
    tokens: list[TokenSpec] = Field(default_factory=list)
    #: Default quotas of a token that has none of its own (and of anonymous loopback use).
    limits: Limits = Field(default_factory=Limits)
    #: Close envs idle this long (seconds, ``None``: never) unless the request sets its own.
    env_idle_ttl: float | None = Field(default=900.0, gt=0)
    sandbox_idle_ttl: float | None = Field(default=1800.0, gt=0)
    reap_interval: float = Field(default=5.0, gt=0)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    heartbeat_timeout: float = Field(default=10.0, gt=0)
    #: Keep records of lost objects this long so that clients get ``WorkerLost``, not "not found".
    lost_retention: float = Field(default=3600.0, ge=0)
    max_body: int = Field(default=DEFAULT_MAX_BODY, gt=0)
    #: Largest tar upload (PUT .../archive, what ``upload()`` sends), streamed to disk.
    max_upload: int = Field(default=4 << 30, gt=0)
    #: A client that sends no body byte for this long gets 408.
    body_timeout: float = Field(default=30.0, gt=0)
    embedded_worker: bool = True
    #: The direct data plane: the placement answer names the remote worker that hosts an env (and a
    #: grant for it), so clients step it there without the admin in the path. Off: through the admin.
    direct_data_plane: bool = True
    worker_id: str = "embedded"
    slots: int = Field(default=4096, ge=1)
    #: Default sandbox settings (the Hydra ``runtime`` group): name, image, cpus, memory, ...
    runtime: dict[str, Any] = Field(default_factory=dict)
    #: Hand out ``runtime="local"`` to clients (``worker.allow_local_runtime``). CLIENTS THEN GET HOST
    #: ACCESS: their commands run on this host, as this server's user, without isolation. Off by
    #: default; ``runtime="auto"`` never falls back to ``local`` unless this is on.
    allow_local_runtime: bool = False
    #: Directories whose files clients may name in env kwargs (``dataset=``, ``tasks=``, rootfs
    #: ``image=`` paths, ...) (``worker.data_dirs``). Empty by default: no host path is served.
    data_dirs: list[str] = Field(default_factory=list)
    log_level: str = "info"
    #: ``text`` or ``json`` (one JSON object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    #: After startup (registry loaded), collect garbage once and move every object alive then out
    #: of the garbage collector's reach (``gc.freeze()``): full collections then scan only what
    #: was made since, instead of ~170k import-time objects (100+ ms pauses under load).
    gc_freeze: bool = True
    #: ROCK's ``image`` names that are not on this host -> a local image (glob patterns, exact names first);
    #: an image neither present nor mapped is refused. See :mod:`rock_env.server.rock_image`.
    #: On the command line as a list of ``"pattern=image"`` strings (Hydra's dict keys cannot hold ``:*/``):
    #: ``'+server.rock_image_map=["python:3.*=rock-env/base:bookworm","mycorp/*=my-image:1"]'``.
    rock_image_map: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ROCK_IMAGE_MAP))

    @field_validator("rock_image_map", mode="before")
    @classmethod
    def _image_map_pairs(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            pairs = {}
            for item in value:
                pattern, sep, image = str(item).partition("=")
                if not sep or not pattern.strip() or not image.strip():
                    raise ValueError(
                        f"rock_image_map entry {item!r} is not 'pattern=image' (e.g. 'python:3.*=rock-env/base:bookworm')"
                    )
                pairs[pattern.strip()] = image.strip()
            return pairs
        return value

    @model_validator(mode="after")
    def _local_needs_consent(self) -> ServerSettings:
        name = self.runtime.get("runtime") or self.runtime.get("name")
        if name == "local" and not self.allow_local_runtime:
            raise ValueError(
                "runtime=local as the server's default sandbox runtime gives every client host access (commands run "
                "on this host without isolation); add worker.allow_local_runtime=true to confirm, or use "
                "runtime=namespace / runtime=docker"
            )
        for d in self.data_dirs:
            if not isinstance(d, str) or not d.strip() or os.path.realpath(os.path.expanduser(d)) == "/":
                raise ValueError(
                    f"worker.data_dirs entry {d!r} is not a usable directory (and '/' would serve the host)"
                )
        return self

    def all_tokens(self) -> list[TokenSpec]:
        """Configured tokens, plus ``token`` / ``$ROCK_ENV_TOKEN`` as the token named ``default``."""
        out = list(self.tokens)
        single = self.token or os.environ.get(TOKEN_ENV_VAR) or None
        if single:
            if len(single) < 8:
                raise ConfigError(f"the API token must be at least 8 characters (got {len(single)}); use a random one.")
            out.append(TokenSpec(name="default", token=single))
        return out

    def data_path(self) -> Path:
        """The data directory (created on demand)."""
        return Path(os.path.expanduser(self.data_dir))

    def check_bind(self) -> None:
        """Refuse a non-loopback address without a token."""
        if self.all_tokens():
            return
        if not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host!r} without an API token: anyone on the network could run "
                f"commands. Set server.token=... or ${TOKEN_ENV_VAR}, or bind 127.0.0.1."
            )


def settings_from(data: dict[str, Any]) -> ServerSettings:
    """Validate a plain dict into settings, with a ConfigError that names the bad keys."""
    try:
        return ServerSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid server settings: {describe_errors(exc.errors(), limit=20)}") from exc
