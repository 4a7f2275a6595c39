"""What the docker runtime's test modules share: the containers this process made, sandbox factories, a bare runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rock_env.sandbox import Sandbox, SandboxConfig
from rock_env.sandbox.runtimes.docker import LABEL_OWNER, DockerRuntime, docker_api
from rock_env.sandbox.runtimes.docker.engine import owner_label
from rock_env.sandbox.sdk import new_sandbox_id

#: the ``make_sandbox`` fixtures: ``make_sandbox(**config_fields)`` -> a started sandbox
MakeSandbox = Callable[..., Sandbox]


def own_containers() -> list[str]:
    """Ids of the containers (running or not) this test process created."""
    items = docker_api().containers(all=True, filters={"label": f"{LABEL_OWNER}={owner_label()}"})
    return sorted(item["Id"] for item in items)


class SandboxFactory:
    """Starts sandboxes of ``defaults`` plus the fields of each call (which win); :meth:`stop_all` stops them."""

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.made: list[Sandbox] = []

    def __call__(self, **fields: Any) -> Sandbox:
        """A started sandbox (stopped by :meth:`stop_all`, also if it failed to start)."""
        sb = Sandbox(**{**self.defaults, **fields})
        self.made.append(sb)
        sb.start()
        return sb

    def stop_all(self) -> None:
        """Stop every sandbox made."""
        for sb in self.made:
            sb.stop()


@contextmanager
def docker_sandboxes(image: str) -> Iterator[SandboxFactory]:
    """A factory of started docker sandboxes of ``image``; afterwards stops them and checks no container is left."""
    before = own_containers()
    make = SandboxFactory(runtime="docker", image=image)
    yield make
    make.stop_all()
    assert own_containers() == before, "containers left behind"


@contextmanager
def bare_runtime(tmp_path: Path, **config: Any) -> Iterator[DockerRuntime]:
    """A started :class:`DockerRuntime` alone (no SDK, no reaper) of ``SandboxConfig(**config)``; stopped afterwards."""
    sandbox_id = new_sandbox_id()
    runtime = DockerRuntime(SandboxConfig(**config), sandbox_id, tmp_path / sandbox_id)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()
