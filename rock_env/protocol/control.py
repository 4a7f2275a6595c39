"""Admin <-> worker control messages: registration, heartbeats, capacity, the object-id header, hosted makes.

Only the admin and its workers speak these (both trusted); clients never send them, and the
client-facing modules (:mod:`.envs`, :mod:`.vecs`, :mod:`.sandboxes`) do not import them.
``GET /api/v1/workers`` answers a :class:`WorkerList` to operators.

Hosted makes: an admin resolves a client's env id once (its registry, plugins, GEM) and hands
the worker the resolved ``EnvSpec.to_dict()`` with the client's request, so that the worker
builds exactly that env without looking the id up again (an id known only to the admin works on
every worker). A worker accepts them only from the cluster token, on routes that are not part of
the public API nor of ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rock_env.protocol.common import WireModel
from rock_env.protocol.envs import EnvMakeRequest
from rock_env.protocol.vecs import VecMakeRequest

#: The header an admin sets when it asks a worker to create an object under a given id.
OBJECT_ID_HEADER = "x-rock-object-id"


class WorkerCapacity(BaseModel):
    """What a worker can host."""

    cpus: float = Field(ge=0)
    memory: int = Field(ge=0, description="bytes")
    slots: int = Field(ge=0, description="how many sandboxes (and envs that own one) it hosts at most")
    runtimes: list[str] = Field(default_factory=list, description="sandbox runtimes it has, e.g. ['local', 'docker']")
    max_envs: int = Field(
        default=1 << 20, ge=0, description="light envs (no sandbox) it can host by memory: its budget / env_memory"
    )
    env_memory: int = Field(default=0, ge=0, description="bytes one light env costs there (measured; 0: not yet)")
    rss: int = Field(default=0, ge=0, description="the worker process's resident memory, bytes")


class WorkerRegisterRequest(WireModel):
    """``POST /api/v1/workers``: a worker joins (or re-joins) the admin."""

    worker_id: str = Field(min_length=1, max_length=128)
    url: str = Field(
        min_length=1, max_length=2048, pattern=r"^https?://\S+$", description="where the admin reaches the worker"
    )
    capacity: WorkerCapacity
    objects: list[str] = Field(default_factory=list, description="ids of the objects it hosts right now")


class WorkerHeartbeatRequest(WireModel):
    """``POST /api/v1/workers/{id}/heartbeat``."""

    objects: list[str] = Field(default_factory=list)
    used_slots: int = Field(default=0, ge=0)
    used: dict[str, float] = Field(
        default_factory=dict, description="objects used since the last beat (the direct data plane): id -> time"
    )
    capacity: WorkerCapacity | None = Field(default=None, description="its capacity now (memory measured)")


class WorkerHeartbeatResponse(BaseModel):
    """The admin's answer: objects it does not know (orphans) that the worker must close."""

    known: bool = Field(description="False: the admin forgot this worker, register again")
    close: list[str] = Field(default_factory=list)


class WorkerInfo(BaseModel):
    """A worker as the admin sees it."""

    id: str
    url: str
    embedded: bool
    status: Literal["alive", "lost"]
    capacity: WorkerCapacity
    used_slots: int
    last_heartbeat: float
    light_envs: int = Field(default=0, description="live envs without a sandbox (limited by capacity.max_envs)")


class WorkerList(BaseModel):
    """``GET /api/v1/workers``."""

    workers: list[WorkerInfo]


#: The worker routes of the hosted makes.
HOSTED_ENVS_PATH = "/api/v1/hosted/envs"
HOSTED_VECS_PATH = "/api/v1/hosted/vecs"
#: Several env makes for one worker in one request (see :mod:`rock_env.server.peer_batch`).
HOSTED_ENVS_BATCH_PATH = "/api/v1/hosted/envs/batch"


class HostedEnvMake(WireModel):
    """Build one env from a spec the admin resolved: the client's request and ``EnvSpec.to_dict()``."""

    request: EnvMakeRequest
    spec: dict[str, Any] = Field(description="EnvSpec.to_dict() of the resolved id")


class HostedEnvMakeItem(HostedEnvMake):
    """One env of a :class:`HostedEnvMakeBatch`, under the id the admin chose."""

    id: str = Field(min_length=1, max_length=128)


class HostedEnvMakeBatch(WireModel):
    """Build several envs; each answers on its own (``{"results": [{"result": EnvInfo, "error": ...}]}``)."""

    items: list[HostedEnvMakeItem] = Field(max_length=4096)


class HostedVecMake(WireModel):
    """Build a vector env from a spec the admin resolved."""

    request: VecMakeRequest
    spec: dict[str, Any] = Field(description="EnvSpec.to_dict() of the resolved id")


__all__ = [
    "HOSTED_ENVS_BATCH_PATH",
    "HOSTED_ENVS_PATH",
    "HOSTED_VECS_PATH",
    "OBJECT_ID_HEADER",
    "HostedEnvMake",
    "HostedEnvMakeBatch",
    "HostedEnvMakeItem",
    "HostedVecMake",
    "WorkerCapacity",
    "WorkerHeartbeatRequest",
    "WorkerHeartbeatResponse",
    "WorkerInfo",
    "WorkerList",
    "WorkerRegisterRequest",
]
