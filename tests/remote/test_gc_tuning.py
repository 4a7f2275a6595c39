"""``rock.tune_gc()`` / ``rock.restore_gc()``: the trainer process's collector settings, and undoing them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

import rock_env as rock
from rock_env.errors import InvalidArgument
from rock_env.remote.gc_tuning import TUNED_THRESHOLD

#: Thresholds nobody uses by default, so that restoring "the defaults" instead of these is caught.
ODD = (701, 11, 9)


class Node:
    """An object in a reference cycle (only a collection frees it)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def gc_state() -> Iterator[None]:
    """Start every test with ODD thresholds and nothing frozen; give the process its GC state back after."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    rock.restore_gc()  # no tune_gc left over from elsewhere
    gc.unfreeze()
    gc.set_threshold(*ODD)
    try:
        yield
    finally:
        rock.restore_gc()
        gc.set_threshold(*threshold)
        if frozen:  # an in-process server of an earlier test had frozen its startup heap
            gc.freeze()


def test_tune_gc_sets_thresholds_and_freezes() -> None:
    assert gc.get_freeze_count() == 0
    previous = rock.tune_gc()
    assert previous == ODD
    assert gc.get_threshold() == (TUNED_THRESHOLD, 20, 20)
    assert gc.get_freeze_count() > 0
    rock.restore_gc()
    assert gc.get_threshold() == ODD and gc.get_freeze_count() == 0


def test_tune_gc_without_freeze() -> None:
    assert rock.tune_gc(1234, freeze=False) == ODD
    assert gc.get_threshold() == (1234, 20, 20) and gc.get_freeze_count() == 0
    rock.restore_gc()
    assert gc.get_threshold() == ODD


def test_restore_after_two_tunes_gives_the_original_back() -> None:
    rock.tune_gc(1000)
    assert rock.tune_gc(2000) == (1000, 20, 20)  # the second call sees the first one's settings
    assert gc.get_threshold() == (2000, 20, 20)
    rock.restore_gc()
    assert gc.get_threshold() == ODD and gc.get_freeze_count() == 0
    # a second restore has nothing left to restore: a later setting of the process stays
    gc.set_threshold(800, 10, 10)
    rock.restore_gc()
    assert gc.get_threshold() == (800, 10, 10)
    # and a new tune saves what is current then
    rock.tune_gc(3000)
    rock.restore_gc()
    assert gc.get_threshold() == (800, 10, 10)


@pytest.mark.parametrize("threshold", [0, -1, -50_000])
def test_bad_threshold_is_invalid_argument_and_changes_nothing(threshold: int) -> None:
    with pytest.raises(InvalidArgument, match=r"threshold"):
        rock.tune_gc(threshold)
    assert gc.get_threshold() == ODD and gc.get_freeze_count() == 0
    gc.set_threshold(900, 10, 10)
    rock.restore_gc()  # the refused call saved nothing that a restore would put back
    assert gc.get_threshold() == (900, 10, 10)


def test_frozen_cycles_are_freed_after_restore() -> None:
    node = Node()
    ref = weakref.ref(node)
    rock.tune_gc()
    del node
    gc.collect()
    assert ref() is not None  # frozen: collections do not walk it
    rock.restore_gc()
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("threshold", [1.5, 2**70])
def test_non_integer_or_huge_threshold_is_invalid_argument_and_saves_nothing(threshold: float) -> None:
    with pytest.raises(InvalidArgument):
        rock.tune_gc(threshold)  # type: ignore[arg-type]
    gc.set_threshold(900, 10, 10)
    rock.restore_gc()
    assert gc.get_threshold() == (900, 10, 10)
