"""A bounded schemathesis run against /openapi.json: no generated request may produce a 5xx."""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
import schemathesis

from tests.server.conftest import serve

pytestmark = [pytest.mark.server, pytest.mark.slow]

#: Examples per operation (bounded so the run stays in seconds).
MAX_EXAMPLES = 10


def test_api_never_answers_5xx(tmp_path: Path) -> None:
    srv = serve(tmp_path, max_body=1 << 20)
    try:
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        failures: list[str] = []
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1

            @hypothesis.given(case=operation.as_strategy())
            @hypothesis.settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                database=None,
                derandomize=True,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=srv.url, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                    )

            check()
        assert operations >= 40
        assert not failures, "\n".join(failures[:20])
    finally:
        srv.stop()
