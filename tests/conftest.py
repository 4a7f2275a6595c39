"""Suite-wide test policy.

With ``ROCK_ENV_REQUIRE_ALL_BACKENDS=1`` (set by ``.ci/run``), a skipped test counts as a
failure: CI must not pass because Docker, bubblewrap or the server could not be reached.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("ROCK_ENV_REQUIRE_ALL_BACKENDS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but ROCK_ENV_REQUIRE_ALL_BACKENDS=1 requires every backend: {reason}"
