"""``rock-env rollout``: single runs, sweeps with tables, failing jobs, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rock_env.cli import main as cli_main
from rock_env.rollout import read_jsonl
from rock_env.rollout.cli import main, split_args
from tests.rollout.helpers import LINE_ID, files_of, register_line_env

WALKER = ["policy=scripted", "policy.target=tests.rollout.helpers:walk_to_target"]


@pytest.fixture(scope="module", autouse=True)
def line_env() -> str:
    return register_line_env()


def test_split_args() -> None:
    assert split_args(["-m", "--config-dir", "d", "seed=0,1", "--cfg=job", "env=bash"]) == (
        ["-m", "--config-dir", "d", "--cfg=job"],
        ["seed=0,1", "env=bash"],
    )


def test_rollout_command_writes_outputs_and_is_reproducible(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", "rock_env.cli", "rollout", "env=sokoban_easy", "policy=random", "episodes=6",
             "seed=0", f"hydra.run.dir={run_dir}"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.append(run_dir)
    assert "6/6" in proc.stderr  # the progress bar
    assert "6 episodes: success" in proc.stdout  # Hydra logs to stdout (and rollout.log)
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["episodes"] == 6 and summary["env"] == "game:Sokoban-v0-easy"
    assert summary["overrides"] == ["env=sokoban_easy", "policy=random", "episodes=6", "seed=0"]
    assert dict(files_of(runs[0])) == dict(files_of(runs[1]))
    assert (runs[0] / ".hydra" / "config.yaml").exists()


def test_output_dir_key(tmp_path: Path) -> None:
    out = tmp_path / "here"
    code = main([f"env.id={LINE_ID}", "episodes=2", "progress=false", f"output_dir={out}",
                 f"hydra.run.dir={tmp_path / 'hydra'}"])  # fmt: skip
    assert code == 0
    assert len(read_jsonl(out / "episodes.jsonl")) == 2


def test_sweep_writes_a_combined_table(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code = main(["-m", "env=sokoban_easy,sokoban_hard", "policy=random,scripted", "seed=0,1", "episodes=2",
                 "progress=false", f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [(r["env"], r["policy"], r["seed"]) for r in rows] == [
        (env, policy, seed)
        for env in ("sokoban_easy", "sokoban_hard")
        for policy in ("random", "scripted")
        for seed in "01"
    ]
    assert {r["status"] for r in rows} == {"ok"} and {r["episodes"] for r in rows} == {"2"}
    assert all(r["success_rate"] == "1.0" for r in rows if r["policy"] == "scripted")  # the solver
    for row in rows:
        summary = json.loads((sweep / row["job"] / "summary.json").read_text())
        assert float(row["mean_return"]) == pytest.approx(summary["mean_return"])
    table = (sweep / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| job | env | policy | seed | episodes (override) |") and len(table) == 2 + 8


def test_sweep_all_ok_exits_zero(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code = main(["-m", f"env.id={LINE_ID}", *WALKER, "seed=0,1", "num_envs=1,2", "episodes=3",
                 "progress=false", f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {(r["seed"], r["num_envs"]) for r in rows} == {(s, n) for s in "01" for n in "12"}
    for job in range(4):
        assert len(read_jsonl(sweep / str(job) / "episodes.jsonl")) == 3


def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sweep"
    code = main(["-m", f"env.id={LINE_ID}", "seed=0,-1,2", "episodes=2", "progress=false",
                 f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert code == 1
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "ok"), ("-1", "failed"), ("2", "ok")]
    assert "seed: Input should be greater than or equal to 0" in rows[1]["error"]
    failed = json.loads((sweep / "1" / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["episodes"] == 0
    assert "failed: " in capsys.readouterr().err


def test_a_crashing_policy_fails_its_job_only(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code = main(["-m", f"env.id={LINE_ID}", "policy=scripted",
                 "policy.target=tests.rollout.helpers:walk_to_target,tests.rollout.helpers:crash_on_right",
                 "episodes=5", "progress=false", f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert code == 1
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert rows[1]["error"] == "ZeroDivisionError: a bug in the policy"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["env=sokoban_eazy"], "Did you mean 'sokoban_easy'?"),
        (["policy=openai", "policy.temprature=0.5"], "Did you mean policy.temperature?"),
        (["episodes=abc"], "episodes: Input should be a valid integer"),
        (["cluster=ray", "num_envs=4"], "set cluster.workers=4 instead"),
        (["cluster=ray", "cluster.workers=0"], "cluster.workers: Input should be greater than or equal to 1"),
        (["-m", "policy=random,openia"], "valid choices for policy: openai, random, scripted"),
        (["-m", "policy=random,scripted", "policy.target=x:y"], "policy=random has the keys name"),
    ],
)
def test_bad_input_is_a_clear_error(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["rollout", *args, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}"])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()  # nothing ran


def test_help_lists_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "policy   openai, random, scripted" in out and "threads" in out


def test_cfg_job_prints_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cfg", "job", "env=sokoban_hard", "policy=openai"]) == 0
    out = capsys.readouterr().out
    assert "id: game:Sokoban-v0-hard" in out and "model: gpt-4o-mini" in out


def test_user_config_dir_adds_options(tmp_path: Path) -> None:
    conf = tmp_path / "myconf"
    (conf / "env").mkdir(parents=True)
    (conf / "env" / "my_line.yaml").write_text(
        f'_target_: rock_env.config.make_env\nid: "{LINE_ID}"\nkwargs: {{length: 4}}\nmax_episode_steps: null\n'
    )
    out = tmp_path / "run"
    code = main(["--config-dir", str(conf), "env=my_line", *WALKER, "episodes=3", "progress=false",
                 f"hydra.run.dir={out}"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["env"]["kwargs"] == {"length": 4} and summary["success_rate"] == 1.0
