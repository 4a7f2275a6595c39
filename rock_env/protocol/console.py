"""Wire models of the web console's API (``/api/v1/console/...``) and of its live-attach WebSocket.

The attach socket (``/api/v1/console/sandboxes/{id}/attach?session=NAME``): the server sends
:class:`AttachHello` first, then one :class:`AttachEvent` per command start, output chunk and
exit of any client of the session; the browser sends :class:`AttachMessage` objects. Typing
(``input``, ``interrupt``) is refused until the browser sent ``takeover``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rock_env.protocol.common import WireModel
from rock_env.protocol.control import WorkerInfo


class SeriesPoint(BaseModel):
    """Rates over one sampling interval, from the numbers of ``/metrics``."""

    t: float = Field(description="end of the interval (unix seconds)")
    steps_per_s: float
    requests_per_s: float
    step_latency_ms: float | None = Field(description="mean latency of env/vector/batch steps in the interval")


class ConsoleCounts(BaseModel):
    """Live objects."""

    envs: int
    vecs: int
    vec_sub_envs: int
    sandboxes: int


class ConsoleOverview(BaseModel):
    """The overview page: workers, counts, rates over the last minutes, errors by type."""

    role: str
    version: str
    viewer: str = Field(description="the token name of the caller")
    sees_all: bool = Field(description="the caller sees every owner's objects (the admin token, or no auth)")
    workers: list[WorkerInfo]
    counts: ConsoleCounts
    series: list[SeriesPoint]
    errors: dict[str, float] = Field(description="errors returned since start, by type")


class ConsoleObject(BaseModel):
    """One row of the env / vector env / sandbox lists."""

    id: str
    kind: Literal["env", "vec", "sandbox"]
    what: str = Field(description="env id, or the sandbox's image")
    runtime: str | None
    worker_id: str
    owner: str
    size: int
    created: float
    last_used: float
    status: str


class ConsoleObjects(BaseModel):
    """The lists."""

    envs: list[ConsoleObject]
    vecs: list[ConsoleObject]
    sandboxes: list[ConsoleObject]


class SessionCommand(BaseModel):
    """A command a session ran (or runs: ``exit_code`` None and no ``duration`` yet)."""

    cmd: str
    started: float
    exit_code: int | None = None
    timed_out: bool = False
    duration: float | None = None


class ConsoleSession(BaseModel):
    """A session of a sandbox with its recent commands (oldest first)."""

    name: str
    alive: bool
    commands: int
    current: SessionCommand | None
    recent: list[SessionCommand]


class ConsoleSandbox(BaseModel):
    """The sandbox page."""

    sandbox: ConsoleObject
    config: dict[str, Any]
    sessions: list[ConsoleSession]
    attachable: bool = Field(description="live attach is possible (the sandbox runs on a worker in this process)")


class EnvStepRecord(BaseModel):
    """One step of an env as the console shows it."""

    step: int
    action: str | None
    reward: float
    terminated: bool
    truncated: bool
    time: float


class EnvHistoryView(BaseModel):
    """The current observation and the last steps of a live env."""

    episode: int = 0
    step: int = 0
    episode_return: float = 0.0
    observation: Any = None
    done: bool = False
    updated: float | None = None
    steps: list[EnvStepRecord] = Field(default_factory=list)


class ConsoleEnv(BaseModel):
    """The env page (for a vector env: one sub-env of it)."""

    env: ConsoleObject
    history: EnvHistoryView
    index: int | None = Field(default=None, description="the sub-env shown (vector envs)")


class AttachMessage(WireModel):
    """A message of the browser on the attach socket."""

    type: Literal["takeover", "release", "input", "interrupt"]
    line: str | None = Field(default=None, max_length=65536, description="the command line (type=input)")


class AttachHello(BaseModel):
    """The server's first message on the attach socket."""

    event: Literal["hello"] = "hello"
    sandbox: str
    session: str
    sessions: list[str]
    current: SessionCommand | None
    recent: list[SessionCommand]


class AttachEvent(BaseModel):
    """A session event: ``command`` (cmd, by), ``output`` (text), ``exit`` (exit_code...), ``takeover``/``release``."""

    event: Literal["command", "output", "exit", "takeover", "release"]
    cmd: str | None = None
    by: str | None = Field(default=None, description="'console' for a command typed in a console, else None")
    text: str | None = None
    exit_code: int | None = None
    timed_out: bool | None = None
    duration: float | None = None
