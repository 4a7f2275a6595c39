"""What the schemathesis runs over the admin's API share (tests/server/test_fuzz.py, tests/abuse/test_api_fuzz.py).

The checks held (every check of ``schemathesis run --checks all`` but :data:`NOT_HELD`), the live
objects that path parameters name (a sandbox's session, background process and snapshot; an env;
a vector env), sending the generated examples of one operation, and the report of failed checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import schemathesis
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.generation.modes import GenerationMode

#: Checks we do not hold the API to, and why.
NOT_HELD = {
    # "Valid data should have been accepted": a schema cannot say which env kwargs an env takes, which
    # env ids are registered or which sandbox paths exist; those schema-valid requests get a 4xx with
    # the reason (InvalidEnvKwargs 422, EnvNotFound 404, ...), which is the point of these suites.
    "positive_data_acceptance",
}
ENV_ID = "game:Sokoban-v0-easy"


def all_checks() -> list[Any]:
    """Every check function schemathesis has (``--checks all``), minus :data:`NOT_HELD`."""
    load_all_checks()
    return [c for c in CHECKS.get_all() if not is_check_class(c) and c.__name__ not in NOT_HELD]


def sandbox_params(
    http: httpx.Client, path: str, sandbox: str, *, session_statuses: tuple[int, ...] = (200,)
) -> dict[str, str]:
    """Path parameters naming ``sandbox`` and the sub-objects ``path`` asks for, made in it.

    ``{name}``: a session ``fuzz`` (made with one of ``session_statuses``); ``{proc}``: a background
    process; ``{snapshot_id}``: a snapshot. They go with the sandbox.
    """
    params = {"sandbox": sandbox}
    base = f"/api/v1/sandboxes/{sandbox}"
    if "{name}" in path:
        made = http.post(f"{base}/sessions", json={"name": "fuzz"})
        assert made.status_code in session_statuses, made.text
        params["name"] = "fuzz"
    if "{proc}" in path:
        proc = http.post(f"{base}/processes", json={"cmd": "true"})
        assert proc.status_code == 200, proc.text
        params["proc"] = proc.json()["id"]
    if "{snapshot_id}" in path:
        snap = http.post(f"{base}/snapshots")
        assert snap.status_code == 200, snap.text
        params["snapshot_id"] = snap.json()["snapshot_id"]
    return params


def env_params(http: httpx.Client, path: str, cleanup: list[Callable[[], Any]]) -> dict[str, str]:
    """Path parameters ``{env}`` (an env, reset) and ``{vec}`` (a vector env of two, reset), if ``path`` has them.

    Their deletes are appended to ``cleanup`` as soon as each exists.
    """
    params: dict[str, str] = {}
    if "{env}" in path:
        env = http.post("/api/v1/envs", json={"env_id": ENV_ID})
        assert env.status_code == 200, env.text
        params["env"] = eid = env.json()["id"]
        http.post(f"/api/v1/envs/{eid}/reset", json={"seed": 0})
        cleanup.append(lambda: http.delete(f"/api/v1/envs/{eid}"))
    if "{vec}" in path:
        vec = http.post("/api/v1/vecs", json={"env_id": ENV_ID, "num_envs": 2})
        assert vec.status_code == 200, vec.text
        params["vec"] = vid = vec.json()["id"]
        http.post(f"/api/v1/vecs/{vid}/reset", json={"seed": 0})
        cleanup.append(lambda: http.delete(f"/api/v1/vecs/{vid}"))
    return params


def send_examples(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    params: dict[str, str],
    on_case: Callable[[schemathesis.Case], None],
) -> None:
    """Generate ``examples`` requests of ``mode`` for ``operation`` (derandomized) and hand each to ``on_case``.

    ``params`` pins path parameters to live objects (none: made-up ids).
    """
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=params or None)

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def check(case: schemathesis.Case) -> None:
        on_case(case)

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        check()  # Unsatisfiable: nothing to negate (e.g. an operation whose only input is a pinned id)


def failure_report(failures: dict[str, list[str]]) -> str:
    """Failed checks by kind, the first eight of each."""
    return "\n".join(f"{kind} ({len(items)}):\n  " + "\n  ".join(items[:8]) for kind, items in failures.items())
