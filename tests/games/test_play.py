"""``rock-env play`` (rock_env/play.py): boards are shown, moves go through, episodes end."""

from __future__ import annotations

import io
import subprocess
import sys

from rock_env.games.sokoban import SokobanEnv, solve
from rock_env.play import main, wrap_action


def test_wrap_action() -> None:
    assert wrap_action("up\n", "game:Sokoban-v0-easy") == "\\boxed{up}"
    assert wrap_action("\\boxed{up}\n", "game:Sokoban-v0-easy") == "\\boxed{up}"
    assert wrap_action("up\n", "game:Sokoban-v0-easy", raw=True) == "up"
    assert wrap_action("ls -la\n", "tool:Bash-v0") == "ls -la"


def test_play_solves_a_level_from_stdin() -> None:
    env = SokobanEnv(dim_room=(6, 6), num_boxes=2, max_turns=20)
    env.reset(seed=0)
    moves = solve(env)
    assert moves
    out = io.StringIO()
    code = main(["game:Sokoban-v0-easy", "--seed", "0"], stdin=io.StringIO("\n".join(moves) + "\n"), stdout=out)
    text = out.getvalue()
    assert code == 0
    assert "Here is the current board layout:" in text and "# # # # # #" in text
    assert "Congratulations! You have solved the Sokoban puzzle!" in text
    assert "reward=1.0 terminated=True truncated=False" in text
    assert "episode finished: return=1.0" in text


def test_play_reports_bad_actions_and_ends_on_eof() -> None:
    out = io.StringIO()
    code = main(["game:Sokoban-v0-easy", "--seed", "3", "--raw"], stdin=io.StringIO("\\boxed{rİght}\n"), stdout=out)
    assert code == 0
    assert "invalid action:" in out.getvalue()


def test_play_cli_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rock_env.cli", "play", "game:Sokoban-v0-hard", "--seed", "5"],
        input="left\nnonsense\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "At turn 1," in proc.stdout
    assert "At turn 2, your submitted action is not valid." in proc.stdout
    assert "reward=-0.1 terminated=True" in proc.stdout


def test_play_unknown_env_is_an_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rock_env.cli", "play", "game:Sokobam-v0-easy"],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Sokoban" in proc.stderr


def test_play_exits_quietly_when_the_reader_goes_away() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rock_env.cli", "play", "game:Sokoban-v0-easy", "--seed", "0", "--episodes", "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    proc.stdout.close()  # like `rock-env play ... | head -1` after head exits
    proc.stdin.write("up\n" * 2000)
    proc.stdin.close()
    try:
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    err = proc.stderr.read()
    proc.stderr.close()
    assert code == 0, err
    assert "Traceback" not in err
