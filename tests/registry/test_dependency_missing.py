"""An env whose optional dependency is missing: a DependencyMissing (HTTP 424) naming the package and the fix."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import rock_env as rock
from rock_env.errors import DependencyMissing, EntryPointError
from rock_env.registry import registry
from rock_env.registry.spec import EnvSpec, dependency_missing


class LateImport:
    """Imports its optional dependency only when built (as many GEM envs do)."""

    def __init__(self, **_: Any) -> None:
        import rock_env_no_such_package_xyz  # type: ignore[import-not-found]  # noqa: F401


@pytest.fixture()
def registered() -> Iterator[list[str]]:
    ids = ["test:NeedsMissing-v0", "test:LateImport-v0"]
    rock.register(ids[0], "tests.server.missing_dependency_env:NeedsMissing", override=True)
    rock.register(ids[1], LateImport, override=True)
    yield ids
    for env_id in ids:
        registry.unregister(env_id)


def test_module_importing_a_missing_package(registered: list[str]) -> None:
    with pytest.raises(DependencyMissing, match=r"'rock-env-no-such-package-xyz'.*pip install rock-env-no-such") as e:
        rock.make(registered[0])
    assert e.value.http_status == 424 and isinstance(e.value, ImportError)


def test_factory_importing_a_missing_package(registered: list[str]) -> None:
    with pytest.raises(DependencyMissing, match=r"test:LateImport-v0.*pip install rock-env-no-such-package-xyz"):
        rock.make(registered[1])


def test_a_missing_entry_point_module_is_still_an_entry_point_error() -> None:
    spec = EnvSpec(id="test:Gone-v0", entry_point="no_such_module_xyz:Env")
    with pytest.raises(EntryPointError, match="cannot import module 'no_such_module_xyz'"):
        spec.load_entry_point()


def test_pip_names() -> None:
    err = ModuleNotFoundError("No module named 'yaml'", name="yaml")
    assert "pip install pyyaml" in str(dependency_missing("x:Y-v0", err))
    err = ModuleNotFoundError("No module named 'reasoning_gym.games'", name="reasoning_gym.games")
    assert "pip install reasoning-gym" in str(dependency_missing("x:Y-v0", err))


def test_gem_env_without_its_optional_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # GEM's code envs import `datasets`, an optional dependency; make it missing even where it is installed
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.delitem(sys.modules, "gem.envs.code_env", raising=False)
    with pytest.raises(DependencyMissing, match=r"'code:CodeContest' needs the Python package 'datasets'.*pip install"):
        rock.make("code:CodeContest")
