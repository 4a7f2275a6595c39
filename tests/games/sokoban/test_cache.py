"""The optional on-disk level cache: same levels as without it, keyed by every input, never a failure."""

from __future__ import annotations

import copy
import logging
import pickle
import sqlite3
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.errors import InvalidArgument
from rock_env.games.sokoban import RoomGenerationError, SokobanEnv, generate_room
from rock_env.games.sokoban.cache import CACHE_ENV_VAR, LevelCache, resolve_cache_dir

EASY = {"dim_room": (6, 6), "num_boxes": 2, "max_turns": 20}
HARD = {"dim_room": (8, 8), "num_boxes": 4, "max_turns": 50}


def resets(env: SokobanEnv, seeds: range) -> list[object]:
    return [env.reset(seed=s) for s in seeds]


def test_cached_levels_equal_generated_ones_and_are_served_from_disk(tmp_path: Path) -> None:
    plain = SokobanEnv(**EASY, level_cache=False)
    first = SokobanEnv(**EASY, level_cache=tmp_path)
    expected = resets(plain, range(30))
    assert resets(first, range(30)) == expected
    assert first.level_cache is not None and (first.level_cache.misses, first.level_cache.hits) == (30, 0)
    second = SokobanEnv(**EASY, level_cache=tmp_path)  # a new env (or process) reads them back
    assert resets(second, range(30)) == expected
    assert second.level_cache is not None and (second.level_cache.misses, second.level_cache.hits) == (0, 30)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite3"] == ["sokoban-levels-v1.sqlite3"]
    for env in (plain, first, second):
        env.close()


def test_entries_are_keyed_by_every_generation_input(tmp_path: Path) -> None:
    easy, hard = SokobanEnv(**EASY, level_cache=tmp_path), SokobanEnv(**HARD, level_cache=tmp_path)
    easy.reset(seed=5)
    hard.reset(seed=5)  # same seed, other size and box count: generated, not served
    assert hard.level_cache is not None and hard.level_cache.misses == 1
    assert hard.reset(seed=5) == SokobanEnv(**HARD).reset(seed=5)
    random_variant = rock.make("game:Sokoban-v0-random", level_cache=tmp_path)
    assert [random_variant.reset(seed=s) for s in range(6)] == [
        rock.make("game:Sokoban-v0-random").reset(seed=s) for s in range(6)
    ]


def test_env_var_turns_it_on_and_false_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "levels"))
    assert resolve_cache_dir(None) == tmp_path / "levels"
    env = rock.make("game:Sokoban-v0-easy")
    env.reset(seed=1)
    assert (tmp_path / "levels" / "sokoban-levels-v1.sqlite3").exists()
    assert SokobanEnv(**EASY, level_cache=False).level_cache is None
    monkeypatch.setenv(CACHE_ENV_VAR, "")
    assert resolve_cache_dir(None) is None
    for bad in (3, "", b"/tmp"):
        with pytest.raises(InvalidArgument, match="level_cache"):
            resolve_cache_dir(bad)  # type: ignore[arg-type]


def test_bad_rows_are_ignored_and_replaced(tmp_path: Path) -> None:
    env = SokobanEnv(**EASY, level_cache=tmp_path)
    expected = env.reset(seed=9)
    assert env.level_cache is not None
    with sqlite3.connect(env.level_cache.path) as conn:
        conn.execute("UPDATE levels SET state = x'0102', player = 77")
    fresh = SokobanEnv(**EASY, level_cache=tmp_path)
    assert fresh.reset(seed=9) == expected
    assert fresh.level_cache is not None and fresh.level_cache.misses == 1
    again = SokobanEnv(**EASY, level_cache=tmp_path)
    assert again.reset(seed=9) == expected and again.level_cache is not None and again.level_cache.hits == 1


def test_corrupt_or_unusable_files_turn_the_cache_off_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sokoban-levels-v1.sqlite3").write_bytes(b"this is not a database" * 100)
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    expected = SokobanEnv(**EASY).reset(seed=2)
    for where in (tmp_path, blocked / "sub"):
        env = SokobanEnv(**EASY, level_cache=where)
        with caplog.at_level(logging.WARNING, logger="rock_env.games.sokoban.cache"):
            assert env.reset(seed=2) == expected
            assert env.reset(seed=2) == expected
        assert env.level_cache is not None and not env.level_cache.enabled
        assert sum("level cache" in r.getMessage() for r in caplog.records) == 1
        caplog.clear()


def test_seeds_without_a_room_are_cached_too(tmp_path: Path) -> None:
    cache = LevelCache(tmp_path)
    with pytest.raises(RoomGenerationError):
        generate_room((4, 4), 5, 3, seed=0, tries=1000)
    for expected_misses in (1, 1):
        with pytest.raises(RoomGenerationError, match="Sokoban room"):
            cache.generate((4, 4), 5, 3, 0)
        assert cache.misses == expected_misses
    assert cache.hits == 1
    cache.close()


def test_envs_with_a_cache_copy_and_pickle(tmp_path: Path) -> None:
    env = SokobanEnv(**EASY, level_cache=tmp_path)
    env.reset(seed=3)
    for clone in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        assert clone.reset(seed=4) == SokobanEnv(**EASY).reset(seed=4)
        assert clone.level_cache is not None and clone.level_cache.enabled
        clone.close()


def test_async_vector_workers_share_one_cache(tmp_path: Path) -> None:
    with rock.make_vec("game:Sokoban-v0-easy", 4, mode="async", level_cache=str(tmp_path)) as envs:
        cached = envs.reset(seed=100)[0]
        cached_again = envs.reset(seed=100)[0]
    with rock.make_vec("game:Sokoban-v0-easy", 4) as plain:
        assert cached == cached_again == plain.reset(seed=100)[0]
    with sqlite3.connect(tmp_path / "sokoban-levels-v1.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM levels").fetchone()[0] == 4
