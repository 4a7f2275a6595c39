"""Snapshots of the workspace: restore after small and large changes, unknown ids, metadata."""

from __future__ import annotations

import pytest

from rock_env.errors import SnapshotNotFound
from rock_env.sandbox import Sandbox

STATE = "find . -printf '%p %y %m %s\\n' | sort; cat src/a.txt src/b/c.txt; readlink link"


def test_restore_brings_back_exact_state(any_sandbox: Sandbox) -> None:
    sb = any_sandbox
    sb.run(
        "mkdir -p src/b && echo a > src/a.txt && echo c > src/b/c.txt && chmod 600 src/a.txt && ln -s src/a.txt link"
    )
    before = sb.run(STATE).output
    snap = sb.snapshot()
    for dirty in (
        "echo more >> src/a.txt",  # content change
        "chmod 755 src/a.txt",  # metadata change only
        "rm -rf src/b && echo new > extra",  # deletions and additions
        "rm link && ln -s /etc/passwd link",  # a link retargeted
        "rm -rf src && mkdir src && echo imposter > src/a.txt",  # a dir replaced
        "echo a > src/a.txt.tmp && mv src/a.txt.tmp src/a.txt",  # same content, new inode
        "true",  # nothing
    ):
        sb.run(dirty)
        sb.restore(snap)
        assert sb.run(STATE).output == before, dirty


def test_two_snapshots_and_full_restore(any_sandbox: Sandbox) -> None:
    sb = any_sandbox
    sb.write_file("v.txt", "1")
    first = sb.snapshot()
    sb.write_file("v.txt", "2")
    second = sb.snapshot()
    sb.restore(first)
    assert sb.read_file("v.txt") == "1"
    sb.restore(second)
    assert sb.read_file("v.txt") == "2"
    assert {s.id for s in sb.snapshots()} == {first, second}
    sb.delete_snapshot(first)
    with pytest.raises(SnapshotNotFound):
        sb.restore(first)


def test_unknown_snapshot(any_sandbox: Sandbox) -> None:
    with pytest.raises(SnapshotNotFound, match="snap-nope"):
        any_sandbox.restore("snap-nope")
