"""The env hub's HTTP API on a real admin (uvicorn on loopback): push, list, show, immutability, checks, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rock_env.server.runner import BackgroundServer
from tests.server.conftest import serve

pytestmark = pytest.mark.server

SOKOBAN = {
    "name": "sokoban-tiny",
    "version": 1,
    "description": "Sokoban with one box",
    "tags": ["game", "easy"],
    "env": "game:Sokoban-v0-easy",
    "kwargs": {"num_boxes": 1},
}
ADMIN_TOKEN = "admin-token-0123"
ALICE_TOKEN = "alice-token-0123"


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(tmp_path_factory.mktemp("hub-admin"))
    yield srv
    srv.stop()


@pytest.fixture()
def http(hub_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub_server.url, timeout=60) as client:
        yield client


def push(http: httpx.Client, spec: dict[str, Any], **headers: str) -> httpx.Response:
    return http.post("/api/v1/hub", json={"spec": spec}, headers=headers)


def test_push_list_show_and_get_one_version(http: httpx.Client) -> None:
    first = push(http, SOKOBAN)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True
    version = body["version"]
    assert version["id"] == "hub:sokoban-tiny-v1"
    assert version["digest"].startswith("sha256:")
    assert version["pushed_by"] == "anonymous"
    resolved = version["resolved"]
    assert resolved["entry_point"] == "rock_env.games.sokoban.env:SokobanEnv"
    assert resolved["kwargs"]["num_boxes"] == 1  # the spec's kwargs over the base env's defaults
    assert resolved["base_env"] == "game:Sokoban-v0-easy" and resolved["source"] == "builtin"
    second = push(http, {**SOKOBAN, "version": 2, "kwargs": {"num_boxes": 2}, "tags": ["game"]})
    assert second.status_code == 201, second.text

    listing = http.get("/api/v1/hub").json()["envs"]
    mine = next(e for e in listing if e["name"] == "sokoban-tiny")
    assert mine["latest"] == 2 and mine["versions"] == [1, 2] and mine["env"] == "game:Sokoban-v0-easy"
    assert [e["name"] for e in http.get("/api/v1/hub", params={"tag": "easy"}).json()["envs"]] == []  # v2 dropped it
    assert [e["name"] for e in http.get("/api/v1/hub", params={"q": "ONE BOX"}).json()["envs"]] == ["sokoban-tiny"]

    shown = http.get("/api/v1/hub/sokoban-tiny").json()
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    one = http.get("/api/v1/hub/sokoban-tiny/versions/1").json()
    assert one["spec"]["kwargs"] == {"num_boxes": 1} and one["problem"] is None


def test_versions_are_immutable(http: httpx.Client) -> None:
    spec = {**SOKOBAN, "name": "immutable", "version": 7}
    assert push(http, spec).status_code == 201
    again = push(http, dict(reversed(list(spec.items()))))  # same content, other key order: idempotent
    assert again.status_code == 200 and again.json()["created"] is False
    changed = push(http, {**spec, "kwargs": {"num_boxes": 2}})
    assert changed.status_code == 409
    assert changed.json()["error"] == "HubVersionConflict"
    assert "immutable" in changed.json()["message"] and "version 8" in changed.json()["message"]
    stored = http.get("/api/v1/hub/immutable/versions/7").json()
    assert stored["spec"]["kwargs"] == {"num_boxes": 1}


BAD_SPECS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("unknown key", {"colour": "red"}, 422, "HubSpecInvalid", "unknown key 'colour'"),
    ("misspelt key", {"kwarg": {}}, 422, "HubSpecInvalid", "'kwarg' -> 'kwargs'"),
    ("unknown kwarg", {"kwargs": {"num_boxs": 1}}, 422, "InvalidEnvKwargs", "'num_boxs' -> 'num_boxes'"),
    ("kwarg type", {"env": "tool:Bash-v0", "kwargs": {"max_turns": "many"}}, 422, "InvalidEnvKwargs", "max_turns"),
    ("unknown env", {"env": "game:Nope-v0"}, 422, "HubSpecInvalid", "unknown env"),
    ("hub env", {"env": "hub:sokoban-tiny-v1"}, 422, "HubSpecInvalid", "is a hub id"),
    ("both targets", {"entry_point": "rock_env.games.sokoban.env:SokobanEnv"}, 422, "HubSpecInvalid", "exactly one"),
    ("no module", {"env": None, "entry_point": "rock_env.nope:X"}, 422, "HubSpecInvalid", "no module"),
    ("not installed", {"env": None, "entry_point": "os.path:join"}, 422, "HubSpecInvalid", "no package installed"),
    ("no attribute", {"env": None, "entry_point": "rock_env.core:Nope"}, 422, "HubSpecInvalid", "has no 'Nope'"),
    ("not a class", {"env": None, "entry_point": "rock_env.core:text_space"}, 422, "HubSpecInvalid", "not a class"),
    ("not an env", {"env": None, "entry_point": "rock_env.errors:RockEnvError"}, 422, "HubSpecInvalid", "not an env"),
    ("local runtime", {"env": "tool:Bash-v0", "kwargs": {"runtime": "local"}}, 403, "PolicyViolation", "'local'"),
    ("host path", {"env": "tool:Bash-v0", "kwargs": {}, "tasks": "/etc/passwd"}, 403, "PolicyViolation", "/etc/passwd"),
    (
        "rootfs path",
        {"env": "tool:Bash-v0", "kwargs": {}, "image": "/srv/rootfs"},
        403,
        "PolicyViolation",
        "/srv/rootfs",
    ),
    ("entry point kwarg", {"kwargs": {"x": {"_target_": "os.system"}}}, 403, "PolicyViolation", "_target_"),
    (
        "bad limits",
        {"env": "tool:Bash-v0", "kwargs": {}, "limits": {"memory": "lots"}},
        422,
        "HubSpecInvalid",
        "memory",
    ),
    ("limits on a game", {"limits": {"pids": 10}}, 422, "HubSpecInvalid", "no sandbox config"),
    ("harness on a game", {"harness": "builtin"}, 422, "HubSpecInvalid", "takes no 'harness'"),
    ("version string", {"version": "3"}, 422, "HubSpecInvalid", "version"),
    ("version in name", {"name": "foo-v2"}, 422, "HubSpecInvalid", "'-vN'"),
]


@pytest.mark.parametrize(("case", "change", "status", "error", "words"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_specs_are_refused_with_the_reason(
    http: httpx.Client, case: str, change: dict[str, Any], status: int, error: str, words: str
) -> None:
    spec = {**SOKOBAN, "name": "bad", "version": 1, **change}
    answer = push(http, spec)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert words in answer.json()["message"]
    assert http.get("/api/v1/hub/bad").status_code == 404  # nothing was stored


def test_unknown_names_and_versions_are_404_naming_what_exists(http: httpx.Client) -> None:
    assert push(http, {**SOKOBAN, "name": "known"}).status_code == 201
    missing = http.get("/api/v1/hub/known/versions/9")
    assert missing.status_code == 404 and "its versions: [1]" in missing.json()["message"]
    close = http.get("/api/v1/hub/knwon")
    assert close.json()["error"] == "HubSpecNotFound" and "'known'" in close.json()["message"]
    assert http.get("/api/v1/hub/bad name").status_code == 422


def test_make_from_a_hub_id_on_the_server(http: httpx.Client) -> None:
    assert push(http, {**SOKOBAN, "name": "made-here", "kwargs": {"num_boxes": 1, "max_turns": 3}}).status_code == 201
    made = http.post("/api/v1/envs", json={"env_id": "hub:made-here-v1"})
    assert made.status_code == 200, made.text
    env = made.json()["id"]
    http.post(f"/api/v1/envs/{env}/reset", json={"seed": 1}).raise_for_status()
    steps = [http.post(f"/api/v1/envs/{env}/step", json={"action": "\\boxed{up}"}).json() for _ in range(3)]
    assert steps[-1]["truncated"] or steps[-1]["terminated"]  # max_turns=3 from the hub spec
    assert http.delete(f"/api/v1/envs/{env}").status_code == 200
    # the client's kwargs still go through the policy and the env's own check
    refused = http.post("/api/v1/envs", json={"env_id": "hub:made-here-v1", "kwargs": {"num_boxs": 2}})
    assert refused.status_code == 422 and refused.json()["error"] == "InvalidEnvKwargs"
    unknown = http.post("/api/v1/envs", json={"env_id": "hub:made-here-v9"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "HubSpecNotFound"


def test_the_hub_survives_a_restart(tmp_path: Path) -> None:
    srv = serve(tmp_path)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            assert push(http, SOKOBAN).status_code == 201
    finally:
        srv.stop()
    srv = serve(tmp_path)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            assert http.get("/api/v1/hub/sokoban-tiny/versions/1").json()["spec"]["kwargs"] == {"num_boxes": 1}
            assert push(http, {**SOKOBAN, "kwargs": {}}).status_code == 409
    finally:
        srv.stop()


def test_pushing_needs_the_admins_token(tmp_path: Path) -> None:
    tokens = [{"name": "admin", "token": ADMIN_TOKEN}, {"name": "alice", "token": ALICE_TOKEN}]
    srv = serve(tmp_path, tokens=tokens)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            anonymous = push(http, SOKOBAN)
            assert anonymous.status_code == 401 and anonymous.json()["error"] == "Unauthorized"
            wrong = push(http, SOKOBAN, Authorization="Bearer not-the-token")
            assert wrong.status_code == 401
            alice = push(http, SOKOBAN, Authorization=f"Bearer {ALICE_TOKEN}")
            assert alice.status_code == 403 and "admin's token" in alice.json()["message"]
            admin = push(http, SOKOBAN, Authorization=f"Bearer {ADMIN_TOKEN}")
            assert admin.status_code == 201 and admin.json()["version"]["pushed_by"] == "admin"
            assert http.get("/api/v1/hub").status_code == 401
            seen = http.get("/api/v1/hub", headers={"Authorization": f"Bearer {ALICE_TOKEN}"})
            assert [e["name"] for e in seen.json()["envs"]] == ["sokoban-tiny"]
    finally:
        srv.stop()


def test_openapi_documents_the_hub(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    assert {"/api/v1/hub", "/api/v1/hub/{name}", "/api/v1/hub/{name}/versions/{version}"} <= set(schema["paths"])
    assert "HubSpec" in schema["components"]["schemas"]


BASH_TASK = {
    "id": "make-file",
    "description": "Create the file /workspace/done.txt containing the word ok.",
    "checks": ['test "$(cat /workspace/done.txt)" = ok'],
}


def test_a_sandbox_spec_folds_image_limits_and_tasks_into_the_kwargs(http: httpx.Client) -> None:
    spec = {
        "name": "bash-one",
        "version": 1,
        "env": "tool:Bash-v0",
        "kwargs": {"max_turns": 3},
        "image": "rock-env/base:bookworm",
        "limits": {"memory": "256m", "pids": 64},
        "tasks": [BASH_TASK],
    }
    answer = push(http, spec)
    assert answer.status_code == 201, answer.text
    resolved = answer.json()["version"]["resolved"]
    assert resolved["kwargs"]["sandbox"] == {"image": "rock-env/base:bookworm", "memory": "256m", "pids": 64}
    assert resolved["kwargs"]["tasks"] == [BASH_TASK] and resolved["kwargs"]["max_turns"] == 3
    assert resolved["requirements"] == ["sandbox"]
    twice = push(http, {**spec, "version": 2, "kwargs": {"sandbox": {"pids": 10}}})
    assert twice.status_code == 422 and "given twice" in twice.json()["message"]


@pytest.mark.bwrap
def test_a_sandbox_hub_env_runs_its_task_on_the_server(http: httpx.Client) -> None:
    spec = {"name": "bash-run", "version": 1, "env": "tool:Bash-v0", "limits": {"pids": 128}, "tasks": [BASH_TASK]}
    assert push(http, spec).status_code == 201
    made = http.post("/api/v1/envs", json={"env_id": "hub:bash-run-v1", "kwargs": {"runtime": "namespace"}})
    assert made.status_code == 200, made.text
    env = made.json()["id"]
    try:
        obs = http.post(f"/api/v1/envs/{env}/reset", json={"seed": 0}).json()["observation"]
        assert "done.txt" in obs
        action = '<tool_call>{"name": "bash", "arguments": {"command": "echo ok > /workspace/done.txt"}}</tool_call>'
        step = http.post(f"/api/v1/envs/{env}/step", json={"action": action}).json()
        submit = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'
        if not step["terminated"]:
            step = http.post(f"/api/v1/envs/{env}/step", json={"action": submit}).json()
        assert step["terminated"] and step["reward"] == 1.0, step
    finally:
        http.delete(f"/api/v1/envs/{env}")


def test_an_agent_spec_names_its_harness(http: httpx.Client) -> None:
    spec = {"name": "agent-bash", "version": 1, "env": "agent:Bash-v0", "harness": "builtin", "limits": {"pids": 128}}
    answer = push(http, spec)
    assert answer.status_code == 201, answer.text
    resolved = answer.json()["version"]["resolved"]
    assert resolved["kwargs"]["harness"] == "builtin" and resolved["kwargs"]["sandbox"] == {"pids": 128}
    assert "sandbox" in resolved["requirements"]


def test_concurrent_pushes_of_one_version_store_exactly_one(hub_server: BackgroundServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> int:
        with httpx.Client(base_url=hub_server.url, timeout=60) as http:
            return push(http, {**SOKOBAN, "name": "raced", "description": f"writer {i}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(one, range(8)))
    assert codes == [201] + [409] * 7
    with httpx.Client(base_url=hub_server.url, timeout=60) as http:
        assert len(http.get("/api/v1/hub/raced").json()["versions"]) == 1


def test_a_gem_env_as_base(http: httpx.Client) -> None:
    spec = {"name": "guess", "version": 1, "env": "game:GuessTheNumber-v0-easy", "kwargs": {"max_turns": 3}}
    answer = push(http, spec)
    assert answer.status_code == 201, answer.text
    assert answer.json()["version"]["resolved"]["source"] == "gem"
    typo = push(http, {**spec, "version": 2, "kwargs": {"max_trns": 3}})  # GEM envs swallow **kwargs; we do not
    assert typo.status_code == 422 and "'max_trns' -> 'max_turns'" in typo.json()["message"]
    made = http.post("/api/v1/envs", json={"env_id": "hub:guess-v1"})
    assert made.status_code == 200, made.text
    env = made.json()["id"]
    assert "Guess The Number" in http.post(f"/api/v1/envs/{env}/reset", json={"seed": 1}).json()["observation"]
    http.delete(f"/api/v1/envs/{env}")
