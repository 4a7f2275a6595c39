"""The SQLite state store: what the admin writes survives a reopen (a restart)."""

from __future__ import annotations

from pathlib import Path

from rock_env.server.store import ObjectRecord, Store, WorkerRecord


def record(i: int, worker: str = "w1") -> ObjectRecord:
    return ObjectRecord(f"env-{i}", "env", worker, "alice", 1, {"env_id": "x"}, {"id": f"env-{i}"}, 1.0, 1.0, None)


def test_records_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    store.put_worker(WorkerRecord("w1", "http://127.0.0.1:1", False, {"cpus": 2.0}, "alive", 5.0))
    for i in range(5):
        store.put_object(record(i))
    store.mark_lost(["env-0", "env-1"], "worker gone")
    store.delete_objects(["env-4"])
    store.touch({"env-2": 42.0})
    store.close()

    again = Store(path)
    objects = {r.id: r for r in again.objects()}
    assert sorted(objects) == ["env-0", "env-1", "env-2", "env-3"]
    assert objects["env-0"].status == "lost" and objects["env-0"].reason == "worker gone"
    assert objects["env-2"].last_used == 42.0 and objects["env-2"].status == "live"
    assert objects["env-3"].request == {"env_id": "x"} and objects["env-3"].owner == "alice"
    (worker,) = again.workers()
    assert worker.id == "w1" and worker.capacity == {"cpus": 2.0} and worker.embedded is False
    again.set_worker_status("w1", "lost")
    assert again.workers()[0].status == "lost"
    again.close()
