"""A bounded schemathesis run over every operation of a real admin's /openapi.json, with all checks.

The admin runs as ``rock-env admin start`` in a child process with an API token (sent with every
request), its own state root and temp dir. Each operation gets schema-valid (positive) and
schema-invalid (negative) requests, derandomized; path parameters name live objects made for the
operation (a namespace sandbox with a session, a background process and a snapshot; an env; a
vector env) so that fuzzed commands, paths, timeouts and env vars reach a real sandbox. Every
answer goes through schemathesis' checks (``--checks all``: no 5xx, status codes, content types,
headers and bodies as declared, invalid data rejected, ...), except ``positive_data_acceptance``
(a schema cannot say which env ids exist or which kwargs an env takes: those get a 4xx with the
reason). The test asserts zero 5xx first and reports every other failed check by kind; afterwards
nothing the fuzzed requests created may be left on the host.

Safety: a generated ``"runtime": "local"`` is replaced by ``"namespace"`` before it is sent (the
server refuses it anyway; this keeps a random command from ever running on the host if it did not).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode

from tests.abuse import hostscan
from tests.abuse.conftest import new_server, runtime_available
from tests.fuzzing import all_checks, env_params, failure_report, sandbox_params, send_examples

pytestmark = [pytest.mark.abuse, pytest.mark.server, pytest.mark.slow, pytest.mark.bwrap]

#: (generation mode, examples per operation)
PASSES = [(GenerationMode.POSITIVE, 8), (GenerationMode.NEGATIVE, 5)]


def scrub(value: Any) -> Any:
    """The same JSON with every ``"runtime": "local"`` turned into ``"namespace"``."""
    if isinstance(value, dict):
        return {k: ("namespace" if k == "runtime" and v == "local" else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class LiveObjects:
    """Objects for the path parameters of each operation: one shared sandbox (replaced when a fuzzed request
    stopped or broke it; a fresh one for the operation that stops sandboxes), a fresh process, snapshot,
    env and vector env per operation."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.sandbox: str | None = None

    def _new_sandbox(self) -> str:
        made = self.http.post(
            "/api/v1/sandboxes", json={"config": {"runtime": "namespace", "memory": "256m", "pids": 64}}
        )
        assert made.status_code == 200, made.text
        return str(made.json()["id"])

    def _shared_sandbox(self) -> str:
        if self.sandbox is not None:
            alive = self.http.post(f"/api/v1/sandboxes/{self.sandbox}/exec", json={"cmd": ["true"], "timeout": 30})
            if alive.status_code == 200 and alive.json().get("exit_code") == 0:
                return self.sandbox
            self.http.delete(f"/api/v1/sandboxes/{self.sandbox}")
        self.sandbox = self._new_sandbox()
        return self.sandbox

    @contextmanager
    def for_operation(self, method: str, path: str) -> Iterator[dict[str, str]]:
        params: dict[str, str] = {}
        cleanup: list[Callable[[], Any]] = []
        http = self.http
        try:
            if "{sandbox}" in path:
                if method.upper() == "DELETE" and path.endswith("{sandbox}"):
                    sid = self._new_sandbox()
                    cleanup.append(lambda: http.delete(f"/api/v1/sandboxes/{sid}"))
                else:
                    sid = self._shared_sandbox()
                params.update(sandbox_params(http, path, sid, session_statuses=(200, 409)))
            params.update(env_params(http, path, cleanup))
            yield params
        finally:
            for close in cleanup:
                with contextlib.suppress(httpx.HTTPError):
                    close()

    def close(self) -> None:
        if self.sandbox is not None:
            with contextlib.suppress(httpx.HTTPError):
                self.http.delete(f"/api/v1/sandboxes/{self.sandbox}")


class Tally:
    """What the run saw: requests per operation, status codes, 5xx answers and failed checks by kind."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.server_errors: list[str] = []
        self.failures: dict[str, list[str]] = collections.defaultdict(list)


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    params: dict[str, str],
    url: str,
    headers: dict[str, str],
    checks: list[Any],
    tally: Tally,
) -> None:
    """Send ``examples`` generated requests of ``mode`` to ``operation`` and check every answer."""

    def check(case: schemathesis.Case) -> None:
        if isinstance(case.body, dict | list) and scrub(case.body) != case.body:
            case.body = scrub(case.body)  # only when changed: schemathesis re-judges a modified body
        label = f"{case.method} {case.formatted_path} [{mode.value}]"
        tally.seen[operation.label] += 1
        try:
            response = case.call(base_url=url, headers=headers, timeout=60)
        except requests.RequestException as exc:
            tally.failures["no answer"].append(f"{label}: {type(exc).__name__}: {exc}")
            return
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors.append(f"{label} -> {response.status_code}: {response.text[:300]!r}")
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.failures[type(failure).__name__].append(
                    f"{label} -> {response.status_code} {response.text[:160]!r}: {' '.join(str(failure).split())[:240]}"
                )
        except Exception as exc:  # a single failed check
            tally.failures[type(exc).__name__].append(
                f"{label} -> {response.status_code}: {' '.join(str(exc).split())[:240]}"
            )

    send_examples(operation, mode, examples, params, check)


def test_api_fuzz_all_checks_no_5xx(request: pytest.FixtureRequest) -> None:
    """Every operation, positive and negative requests, all checks: zero 5xx, and every other check holds."""
    runtime_available(request, "namespace")
    scope = request.getfixturevalue("scope")
    before = hostscan.snapshot(scope)
    server = new_server(scope, "fuzz", "runtime=namespace")
    headers = {"authorization": f"Bearer {server.token}"}
    checks = all_checks()
    tally = Tally()
    started = time.monotonic()
    server.start()
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json", headers=headers)
        operations = [result.ok() for result in schema.get_all_operations()]
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
            live = LiveObjects(http)
            for operation in operations:
                with live.for_operation(operation.method, operation.path) as params:
                    for mode, examples in PASSES:
                        fuzz_operation(operation, mode, examples, params, server.url, headers, checks, tally)
            live.close()
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    print(
        f"fuzz: {len(operations)} operations, {sum(tally.seen.values())} requests in {elapsed:.0f}s, {tally.statuses}"
    )
    left, _ = hostscan.wait_for_no_leaks(scope, before)
    if left:
        hostscan.reap_leftovers(scope)
    assert len(operations) >= 40, [op.label for op in operations]
    assert set(tally.seen) == {op.label for op in operations}, "every operation got requests"
    failures = tally.failures
    report = failure_report(failures)
    assert not tally.server_errors, (
        f"{len(tally.server_errors)} 5xx answers in {elapsed:.0f}s:\n  "
        + "\n  ".join(tally.server_errors[:20])
        + f"\nother failed checks:\n{report}"
    )
    assert not failures, f"no 5xx, but {sum(map(len, failures.values()))} failed checks in {elapsed:.0f}s:\n{report}"
    assert not left, f"left on the host after the fuzzed admin stopped:{hostscan.describe(left)}"
