"""The env hub on the wire: ``/api/v1/hub`` (push, list, show, one version).

A hub spec (:class:`HubSpec`) is what ``rock-env hub push SPEC.yaml`` sends: a name, an integer
version and either an ``env`` id the server's registry knows or an ``entry_point`` naming an env
class installed on the server, with default ``kwargs`` (sandbox envs may add ``image``, ``tasks``,
``dataset``, ``harness`` and ``limits``). Its id is ``hub:NAME-vN``. A version is immutable once
pushed. The server's checks (registry, kwargs, policy) live in :mod:`rock_env.server.hub_validate`;
these models only fix the shapes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from rock_env.protocol.common import JsonDict, WireModel

#: Hub names: a letter, then letters, digits, ``_``, ``.`` and ``-`` (no ``-vN`` part: that is the version).
HUB_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"
#: Tags: short words.
HUB_TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]{0,31}$"
#: The namespace of hub env ids (``hub:NAME-vN``).
HUB_NAMESPACE = "hub"
MAX_HUB_VERSION = 1 << 31
_VERSION_PART = re.compile(r"-v\d+(?:-|$)")


def hub_env_id(name: str, version: int) -> str:
    """The env id of a hub spec version: ``hub:NAME-vN``."""
    return f"{HUB_NAMESPACE}:{name}-v{version}"


class SandboxLimits(WireModel):
    """Resource limits of a sandbox env's sandbox (the ``SandboxConfig`` fields of the same names)."""

    cpus: float | None = Field(default=None, gt=0)
    memory: str | int | None = Field(default=None, description="bytes or '512m', '2g'")
    pids: int | None = Field(default=None, gt=0)
    disk: str | int | None = Field(default=None, description="bytes or '1g'")
    output_limit: int | None = Field(default=None, gt=0, description="bytes of command output kept")
    ttl: float | None = Field(default=None, gt=0, description="absolute lifetime in seconds")
    idle_ttl: float | None = Field(default=None, gt=0)


class HubSpec(WireModel):
    """An env definition as pushed (the YAML file of ``rock-env hub push``)."""

    name: str = Field(pattern=HUB_NAME_PATTERN, description="the hub name; the env id is hub:NAME-vN")
    version: int = Field(ge=0, lt=MAX_HUB_VERSION, description="an integer; immutable once pushed")
    description: str = Field(default="", max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=32)
    kwargs: JsonDict = Field(default_factory=dict, description="default keyword arguments of the env")
    env: str | None = Field(
        default=None, min_length=1, max_length=256, description="an env id the server's registry knows"
    )
    entry_point: str | None = Field(
        default=None, min_length=3, max_length=256, description="'module:Class' of an env class installed on the server"
    )
    local: bool = Field(
        default=False,
        description="clients may build the env in their own process (it needs the same packages there); "
        "otherwise rock.make('hub:...') runs it on the server",
    )
    max_episode_steps: int | None = Field(default=None, gt=0, lt=MAX_HUB_VERSION)
    image: str | None = Field(default=None, min_length=1, max_length=4096, description="sandbox image (sandbox envs)")
    tasks: str | list[Any] | None = Field(default=None, description="tasks file on the server, or the tasks inline")
    dataset: str | list[Any] | None = Field(default=None, description="dataset on the server, or the items inline")
    harness: str | list[str] | None = Field(
        default=None, description="the agent harness (agent envs): 'builtin', a command, or an argv list"
    )
    limits: SandboxLimits | None = Field(default=None, description="the sandbox's resource limits")

    @field_validator("name")
    @classmethod
    def _name_has_no_version(cls, value: str) -> str:
        if _VERSION_PART.search(value):
            raise ValueError(f"name {value!r} contains a '-vN' part; the version goes in 'version', not in the name")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not re.match(HUB_TAG_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must be a short word (letters, digits, '_', '.', ':', '+', '-')")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> HubSpec:
        if (self.env is None) == (self.entry_point is None):
            raise ValueError(
                "give exactly one of 'env' (a registered id, e.g. game:Sokoban-v0-easy) and "
                "'entry_point' ('module:Class' of an env class installed on the server)"
            )
        return self

    @property
    def env_id(self) -> str:
        """``hub:NAME-vN``."""
        return hub_env_id(self.name, self.version)


#: The keys a hub spec may have (anything else is refused on push).
HUB_SPEC_KEYS: tuple[str, ...] = tuple(HubSpec.model_fields)


class HubResolved(BaseModel):
    """What the server builds for a hub spec version (the registry spec it resolves to)."""

    entry_point: str
    kwargs: JsonDict = Field(default_factory=dict, description="the base env's defaults with the spec's kwargs")
    requirements: list[str] = Field(default_factory=list)
    max_episode_steps: int | None = None
    source: str = Field(description="registry source of the base env (builtin, plugin, gem, user)")
    base_env: str | None = Field(default=None, description="the base env id (specs with 'env')")
    arguments: list[str] | None = Field(
        default=None, description="the keyword arguments a client may pass (None: the env takes any)"
    )


class HubVersion(BaseModel):
    """One stored version of a hub spec."""

    id: str = Field(description="the env id, hub:NAME-vN")
    name: str
    version: int
    spec: HubSpec
    digest: str = Field(description="sha256 of the spec's canonical JSON")
    pushed_at: float = Field(description="unix time")
    pushed_by: str = Field(description="name of the token that pushed it ('anonymous' without auth)")
    resolved: HubResolved | None = Field(default=None, description="None when the server cannot build it now")
    problem: str | None = Field(default=None, description="why it cannot be built now (None: it can)")


class HubEnvSummary(BaseModel):
    """One hub name in a listing (its latest version's description and tags)."""

    name: str
    latest: int
    versions: list[int] = Field(description="ascending")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    env: str | None = None
    entry_point: str | None = None
    local: bool = False
    pushed_at: float = Field(description="unix time of the latest version")


class HubList(BaseModel):
    """``GET /api/v1/hub``."""

    envs: list[HubEnvSummary]


class HubEntry(BaseModel):
    """``GET /api/v1/hub/{name}``: every version, newest first."""

    name: str
    versions: list[HubVersion]


class HubPushRequest(WireModel):
    """``POST /api/v1/hub``: push one spec version."""

    spec: JsonDict = Field(description="a HubSpec object (the parsed YAML)")


class HubPushResponse(BaseModel):
    """The answer to a push: ``created`` is false when the identical version was there already."""

    created: bool
    version: HubVersion


__all__ = [
    "HUB_NAMESPACE",
    "HUB_NAME_PATTERN",
    "HUB_SPEC_KEYS",
    "HubEntry",
    "HubEnvSummary",
    "HubList",
    "HubPushRequest",
    "HubPushResponse",
    "HubResolved",
    "HubSpec",
    "HubVersion",
    "SandboxLimits",
    "hub_env_id",
]
