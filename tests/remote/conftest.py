"""Fixtures: one admin served from a background thread for the client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin")))
    srv = BackgroundServer(create_app(settings)).start()
    yield srv
    srv.stop()
