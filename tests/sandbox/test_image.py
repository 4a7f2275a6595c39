"""The base image builder: mirror discovery, input checks, the cache and the CLI.

The full build (debootstrap, about 1-2 minutes) happens once per machine; it is cached on
disk, so these tests mostly see the cached result. Error paths run real debootstrap against
an unreachable mirror, and a PATH without debootstrap.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from rock_env.errors import ConfigError, ImageBuildError, ImageNotFound, RuntimeUnavailable
from rock_env.sandbox import image_cli
from rock_env.sandbox.image import (
    DEFAULT_IMAGE_NAME,
    LABEL_KEY,
    BaseImageSpec,
    base_rootfs,
    build_base_image,
    default_mirror,
    docker_image_labels,
)

REPO = Path(__file__).resolve().parents[2]


def test_mirror_from_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCK_ENV_DEBIAN_MIRROR", raising=False)
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# comment\n"
        "deb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian-security bookworm-security main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://mirror.example/debian bookworm main contrib\n"
    )
    assert default_mirror("bookworm", sources_list=sources, sources_dir=tmp_path / "none") == (
        "http://mirror.example/debian"
    )


def test_mirror_from_deb822_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCK_ENV_DEBIAN_MIRROR", raising=False)
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "a-disabled.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
    )
    (parts / "debian.sources").write_text(
        "Types: deb\n"
        "# http://snapshot.example/archive\n"
        "URIs: http://deb.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    (parts / "other.list.disabled").write_text("deb http://ignored.example/debian bookworm main\n")
    found = default_mirror("bookworm", sources_list=tmp_path / "missing", sources_dir=parts)
    assert found == "http://deb.example/debian"
    with pytest.raises(ImageBuildError, match="--mirror"):
        default_mirror("trixie", sources_list=tmp_path / "missing", sources_dir=parts)
    monkeypatch.setenv("ROCK_ENV_DEBIAN_MIRROR", "http://override.example/debian")
    assert default_mirror("trixie", sources_list=tmp_path / "missing", sources_dir=parts) == (
        "http://override.example/debian"
    )


def test_this_machine_has_a_mirror() -> None:
    assert default_mirror().startswith(("http://", "https://"))


def test_cache_key_depends_on_inputs_only() -> None:
    a = BaseImageSpec(packages=("git", "bash"))
    b = BaseImageSpec(packages=("bash", "git", "git"))
    c = BaseImageSpec(packages=("bash",))
    assert a.key() == b.key()
    assert a.key() != c.key()
    assert a.key() != BaseImageSpec(packages=("git", "bash"), suite="trixie").key()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "Bad Name!"}, "not a valid Docker reference"),
        ({"packages": ["python3", "rm -rf /"]}, "malformed Debian package"),
        ({"suite": "../etc"}, "suite"),
        ({"variant": "huge"}, "variant"),
        ({"docker": False, "rootfs": False}, "nothing to build"),
    ],
)
def test_bad_input_is_a_config_error(kwargs: dict[str, object], match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        build_base_image(root=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not any(tmp_path.glob("images/.build-*"))


def test_missing_debootstrap_is_runtime_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RuntimeUnavailable, match="apt-get install -y debootstrap"):
        build_base_image(root=tmp_path, docker=False, packages=("bash",))
    assert not any((tmp_path / "images").glob(".build-*"))


def test_unreachable_mirror_is_an_image_build_error(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="debootstrap failed") as info:
        build_base_image(root=tmp_path, docker=False, packages=("bash",), mirror="http://127.0.0.1:9/debian")
    assert "127.0.0.1:9" in str(info.value)
    # nothing half-built is left behind, and nothing stays mounted
    assert not any((tmp_path / "images").glob(".build-*"))
    assert str(tmp_path) not in Path("/proc/self/mounts").read_text()


@pytest.mark.docker
@pytest.mark.slow
def test_build_is_cached_and_usable(tmp_path: Path) -> None:
    first = build_base_image(DEFAULT_IMAGE_NAME)  # builds on a fresh machine, else cached
    assert first.docker_image_id and first.rootfs_dir and first.rootfs_tar
    started = time.monotonic()
    again = build_base_image(DEFAULT_IMAGE_NAME)
    assert again.cached
    assert time.monotonic() - started < 5
    assert again.key == first.key and again.docker_image_id == first.docker_image_id
    # the rootfs has what sandboxes need, and no device nodes
    root = base_rootfs(DEFAULT_IMAGE_NAME)
    assert root == first.rootfs_dir.resolve()
    for tool in ("usr/bin/python3", "usr/bin/git", "usr/bin/bash", "usr/bin/env", "usr/bin/setsid"):
        assert (root / tool).exists(), tool
    assert (root / "workspace").is_dir()
    assert list((root / "dev").iterdir()) == []
    # the Docker image is labelled with the cache key and runs
    import docker

    client = docker.from_env()
    labels = docker_image_labels(client, DEFAULT_IMAGE_NAME)
    assert labels is not None and labels[LABEL_KEY] == first.key
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", DEFAULT_IMAGE_NAME, "python3", "-c", "print(6 * 7)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout == "42\n"


def test_base_rootfs_of_an_unbuilt_name(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="rock-env image build-base --name rock-env/other:x"):
        base_rootfs("rock-env/other:x", root=tmp_path)


@pytest.mark.docker
def test_cli_build_base_json_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert image_cli.main(["build-base", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["name"] == DEFAULT_IMAGE_NAME
    assert result["docker_image_id"].startswith("sha256:")
    assert image_cli.main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(item["key"] == result["key"] for item in listed)


def test_cli_rejects_both_only_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        image_cli.main(["build-base", "--rootfs-only", "--docker-only"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_rock_env_command_reports_typed_errors(tmp_path: Path) -> None:
    env = {**os.environ, "ROCK_ENV_DATA_DIR": str(tmp_path), "PATH": str(tmp_path / "no-bin")}
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "rock_env.cli", "image", "build-base", "--rootfs-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert "debootstrap is not installed" in out.stderr
    assert "Traceback" not in out.stderr
