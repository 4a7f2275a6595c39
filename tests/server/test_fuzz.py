"""A bounded schemathesis run over every operation of /openapi.json with all of schemathesis' checks.

Schema-valid (positive) and schema-invalid (negative) requests are generated for every
operation, derandomized, and every answer goes through all the checks that ``schemathesis
run --checks all`` runs: no 5xx, status codes, content types, headers and bodies as the
schema declares them, invalid data rejected, ... Path parameters name live objects (a
sandbox with a session, a background process and a snapshot, an env, a vector env), made
afresh for each operation, so the fuzzed commands, paths, timeouts and env vars reach a
real namespace sandbox, not a 404.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode

from tests.fuzzing import all_checks, env_params, failure_report, sandbox_params, send_examples
from tests.server.conftest import serve

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.bwrap]

#: The passes over each operation: (mode, path parameters naming live objects?, examples). Bounded:
#: a minute or two on 2 cores. Operations whose only input is a pinned id get one example (there is
#: nothing else to vary); the last pass sends made-up ids to every operation that takes one.
PASSES = [(GenerationMode.POSITIVE, True, 18), (GenerationMode.NEGATIVE, True, 8), (GenerationMode.POSITIVE, False, 6)]


@contextmanager
def live_objects(http: httpx.Client, path: str) -> Iterator[dict[str, str]]:
    """Fresh objects for the path parameters of one operation (closed afterwards, if still there)."""
    params: dict[str, str] = {}
    cleanup: list[Callable[[], Any]] = []
    try:
        if "{sandbox}" in path:
            sb = http.post("/api/v1/sandboxes", json={"config": {"runtime": "namespace", "memory": "512m"}})
            assert sb.status_code == 200, sb.text
            sid = sb.json()["id"]
            cleanup.append(lambda: http.delete(f"/api/v1/sandboxes/{sid}"))
            params.update(sandbox_params(http, path, sid))
        params.update(env_params(http, path, cleanup))
        yield params
    finally:
        for close in cleanup:
            close()


def fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    params: dict[str, str],
    url: str,
    checks: list[Any],
    failures: dict[str, list[str]],
    seen: collections.Counter[str],
) -> None:
    """Send ``examples`` generated requests of ``mode`` to ``operation``; record every failed check."""

    def check(case: schemathesis.Case) -> None:
        label = f"{case.method} {case.formatted_path} [{mode.value}]"
        seen[operation.label] += 1
        try:
            response = case.call(base_url=url, timeout=60)
        except requests.RequestException as exc:
            failures["no answer"].append(f"{label}: {type(exc).__name__}: {exc}")
            return
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                failures[type(failure).__name__].append(
                    f"{label} -> {response.status_code} {response.text[:200]!r}: {' '.join(str(failure).split())[:300]}"
                )

    send_examples(operation, mode, examples, params, check)


def test_every_operation_passes_all_checks(tmp_path: Path) -> None:
    srv = serve(tmp_path, max_body=1 << 20)
    checks = all_checks()
    failures: dict[str, list[str]] = collections.defaultdict(list)
    seen: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    try:
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            for operation in operations:
                with live_objects(http, operation.path) as params:
                    for mode, pinned, examples in PASSES:
                        if pinned or params:
                            fuzz(operation, mode, examples, params if pinned else {}, srv.url, checks, failures, seen)
    finally:
        srv.stop()
    elapsed = time.monotonic() - started
    assert len(operations) >= 50, [op.label for op in operations]
    assert set(seen) == {op.label for op in operations}, "every operation got requests"
    report = failure_report(failures)
    assert not failures, f"{sum(map(len, failures.values()))} failures in {elapsed:.0f}s:\n{report}"
