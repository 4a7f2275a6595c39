"""The configs ship in the wheel: build it, install it apart, run a rollout from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_rollout_from_an_installed_wheel(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: the build must not write into the source tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "rock_env", src / "rock_env", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist, site = tmp_path / "dist", tmp_path / "site"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        tmp_path,
    )
    wheel = next(dist.glob("rock_env-*.whl"))
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], tmp_path)
    assert (site / "rock_env" / "conf" / "env" / "sokoban_easy.yaml").exists()
    assert (site / "rock_env" / "conf" / "policy" / "openai.yaml").exists()

    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "work"  # no conf/ directory here: the configs must come from the package
    work.mkdir()
    where = run([sys.executable, "-c", "import rock_env; print(rock_env.__file__)"], work, env).stdout.strip()
    assert where.startswith(str(site)), where
    out = work / "run"
    run([sys.executable, "-m", "rock_env.cli", "rollout", "env=sokoban_easy", "policy=scripted", "episodes=3",
         "progress=false", f"hydra.run.dir={out}"], work, env)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["episodes"] == 3 and summary["success_rate"] == 1.0
