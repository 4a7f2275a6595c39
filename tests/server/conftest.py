"""Fixtures: an admin app served on a free loopback port from a background thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings


def serve(tmp: Path, **settings: object) -> BackgroundServer:
    """Start an admin with its state under ``tmp``."""
    return BackgroundServer(create_app(ServerSettings(data_dir=str(tmp), **settings))).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(tmp_path_factory.mktemp("admin"))
    yield srv
    srv.stop()


@pytest.fixture()
def http(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client
