"""The web console in real headless Chromium (Debian's ``chromium``, driven by Playwright).

One admin with an API token and the namespace runtime; the browser logs in through the
console's form like a user. Covers: the page loads, lists a sandbox the test made, a command
typed in the attached terminal shows its output, a command another client runs through the
API appears live, stop works, the env page follows a running episode, everything is escaped,
and the attach socket needs the token.

``ROCK_ENV_CONSOLE_SCREENSHOT=docs/console.png`` also saves a screenshot of the console there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rock_env.server.console_auth import token_subprotocol
from rock_env.server.runner import BackgroundServer
from tests.server.conftest import serve

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

CHROMIUM = "/usr/bin/chromium"
TOKEN = "console-admin-token-0123"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: An HTML/JS payload: if any of it ran or became an element, the page is not escaping.
EVIL = "<img src=x onerror=\"window.__pwned='img'\"><script>window.__pwned='script'</script><b id=pwned>b</b>"


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(tmp_path_factory.mktemp("console-admin"), token=TOKEN, runtime={"runtime": "namespace"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(admin: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin.url, timeout=60, headers=HEADERS) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="rock-env-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=ARGS,
                headless=True,
                viewport={"width": 1400, "height": 1000},
                # the page's CSP forbids eval, which Playwright's waits use; off here, which also makes the
                # escaping test stricter: it checks the escaping itself, not the CSP that would back it up
                bypass_csp=True,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser: Any, admin: BackgroundServer) -> Any:
    """A page logged in through the console's form."""
    page = browser.new_page()
    page.set_default_timeout(60_000)  # 2 shared cores: be patient, not flaky
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(admin.url + "/")
    page.wait_for_selector("#login")  # the server has a token: the console asks for it
    page.fill("#token", "wrong-token-000")
    page.click("#login button")
    page.wait_for_selector("#login .banner")  # a wrong token is refused with the server's message
    page.fill("#token", TOKEN)
    page.click("#login button")
    page.wait_for_selector("#workers")
    page.errors = errors
    return page


@pytest.fixture()
def sandbox(http: httpx.Client) -> Iterator[str]:
    made = http.post("/api/v1/sandboxes", json={"config": {"runtime": "namespace"}})
    assert made.status_code == 200, made.text
    sid = made.json()["id"]
    yield sid
    http.delete(f"/api/v1/sandboxes/{sid}")


def terminal_text(page: Any) -> str:
    return str(page.evaluate("window.rockConsole.text()"))


def wait_terminal(page: Any, needle: str, timeout: float = 15.0) -> str:
    page.wait_for_function(
        "n => window.rockConsole && window.rockConsole.text().includes(n)", arg=needle, timeout=timeout * 1e3
    )
    return terminal_text(page)


def attach(page: Any, url: str, sid: str) -> None:
    page.goto(f"{url}/#/sandbox/{sid}")
    page.wait_for_function("document.querySelector('#attach-status')?.textContent === 'watching'")


def test_overview_and_list_show_the_sandbox(page: Any, admin: BackgroundServer, sandbox: str) -> None:
    page.goto(admin.url + "/#/")
    page.wait_for_selector("#workers")
    assert "embedded" in page.inner_text("#workers")
    page.wait_for_function("document.querySelector('#counts').innerText.includes('sandboxes')")
    page.goto(admin.url + "/#/sandboxes")
    row = page.wait_for_selector(f"#sandboxes tr[data-id='{sandbox}']")
    assert "namespace" in row.inner_text() and "default" in row.inner_text()  # runtime, owner token name
    page.fill("#filter", sandbox[-8:])
    assert page.is_visible(f"#sandboxes tr[data-id='{sandbox}']")
    page.fill("#filter", "no-such-sandbox-zzz")
    page.wait_for_selector(f"#sandboxes tr[data-id='{sandbox}']", state="detached")
    assert not page.errors


def test_typed_command_and_api_command_show_live(
    page: Any, admin: BackgroundServer, http: httpx.Client, sandbox: str
) -> None:
    attach(page, admin.url, sandbox)
    # typing before taking over does nothing
    page.click("#terminal")
    page.keyboard.type("echo not-sent")
    page.keyboard.press("Enter")
    page.click("#takeover")  # the confirm() dialog is accepted
    page.wait_for_function("document.querySelector('#attach-status').textContent.startsWith('you control')")
    page.click("#terminal")
    page.keyboard.type("cd /tmp && echo typed-$((6*7)) && pwd")
    page.keyboard.press("Enter")
    text = wait_terminal(page, "typed-42")
    assert "not-sent" not in text
    wait_terminal(page, "[exit 0]")
    recent = http.get(f"/api/v1/console/sandboxes/{sandbox}").json()["sessions"][0]["recent"]
    assert recent[-1]["cmd"] == "cd /tmp && echo typed-$((6*7)) && pwd" and recent[-1]["exit_code"] == 0
    # the session is the agent's: its cwd persists for API clients too
    assert http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": "pwd"}).json()["output"] == "/tmp\n"

    # another client's command streams into the attached terminal while it runs
    done = threading.Event()
    answer: dict[str, Any] = {}

    def run() -> None:
        cmd = "for i in 1 2 3; do echo api-$i; sleep 0.4; done; exit 3"
        answer.update(http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": cmd}).json())
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    wait_terminal(page, "api-1")
    assert not done.is_set(), "the output must show while the command runs, not after"
    worker.join(timeout=30)
    assert answer["exit_code"] == 3
    text = wait_terminal(page, "[exit 3]")
    assert "api-3" in text and "(agent/API)" in text
    page.wait_for_function("document.querySelector('#recent-table').innerText.includes('api-$i')")
    assert not page.errors


def test_files_and_stop(page: Any, admin: BackgroundServer, http: httpx.Client, sandbox: str) -> None:
    http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": "mkdir -p sub && echo file-body > sub/hello.txt"})
    attach(page, admin.url, sandbox)
    page.wait_for_selector("#files-table a.dir:text('sub/')").click()
    page.wait_for_selector("#files-table a.file:text('hello.txt')")
    with page.expect_download() as download:
        page.click("#files-table a.file:text('hello.txt')")
    assert Path(download.value.path()).read_text() == "file-body\n"
    page.click("#stop")  # confirm() accepted
    page.wait_for_selector("#stopped")
    listed = http.get("/api/v1/sandboxes").json()["sandboxes"]
    assert sandbox not in [s["id"] for s in listed]
    page.wait_for_function("document.querySelector('#attach-status').textContent.startsWith('detached')")


def test_env_page_follows_an_episode(page: Any, admin: BackgroundServer, http: httpx.Client) -> None:
    env = http.post("/api/v1/envs", json={"env_id": "game:Sokoban-v0-easy"}).json()["id"]
    try:
        first = http.post(f"/api/v1/envs/{env}/reset", json={"seed": 3}).json()["observation"]
        page.goto(f"{admin.url}/#/env/{env}")
        page.wait_for_function("n => document.querySelector('#observation')?.textContent === n", arg=first)
        seen: set[int] = set()
        for step, move in enumerate(["left", "up", "right", "down"], start=1):
            result = http.post(f"/api/v1/envs/{env}/step", json={"action": f"\\boxed{{{move}}}"}).json()
            page.wait_for_function(
                "n => document.querySelector('#env-info')?.innerText.includes('step\\t' + n)", arg=str(step)
            )
            assert page.text_content("#observation") == result["observation"]
            assert f"\\boxed{{{move}}}" in page.inner_text("#steps")
            seen.add(step)
            time.sleep(0.3)
            if result["terminated"] or result["truncated"]:
                break
        assert seen == set(range(1, len(seen) + 1)) and len(seen) >= 2
    finally:
        http.delete(f"/api/v1/envs/{env}")
    assert not page.errors


def test_vector_env_page_follows_one_sub_env(page: Any, admin: BackgroundServer, http: httpx.Client) -> None:
    vec = http.post("/api/v1/vecs", json={"env_id": "game:Sokoban-v0-easy", "num_envs": 2}).json()["id"]
    try:
        http.post(f"/api/v1/vecs/{vec}/reset", json={"seed": 5})
        page.goto(admin.url + "/#/envs")
        page.wait_for_selector(f"#vecs tr[data-id='{vec}'] a").click()
        page.wait_for_selector("#sub-env")
        page.fill("#sub-env", "1")
        page.dispatch_event("#sub-env", "change")
        for step in (1, 2):
            answer = http.post(
                f"/api/v1/vecs/{vec}/step", json={"actions": ["\\boxed{up}", f"\\boxed{{left}} #{step}"]}
            )
            observation = answer.json()["observations"][1]
            page.wait_for_function(
                "n => document.querySelector('#env-info')?.innerText.includes('step\\t' + n)", arg=str(step)
            )
            page.wait_for_function("o => document.querySelector('#observation')?.textContent === o", arg=observation)
            assert f"#{step}" in page.inner_text("#steps") and "boxed{up}" not in page.inner_text("#steps")
    finally:
        http.delete(f"/api/v1/vecs/{vec}")


def test_everything_shown_is_escaped(page: Any, admin: BackgroundServer, http: httpx.Client, sandbox: str) -> None:
    quoted = EVIL.replace("'", "'\\''")
    http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": f"echo '{quoted}'; : > '<b id=pwned2>'"})
    env = http.post("/api/v1/envs", json={"env_id": "game:Sokoban-v0-easy"}).json()["id"]
    try:
        http.post(f"/api/v1/envs/{env}/reset", json={"seed": 1})
        http.post(f"/api/v1/envs/{env}/step", json={"action": "\\boxed{up}" + EVIL})
        attach(page, admin.url, sandbox)
        page.wait_for_selector("#files-table a.file")
        assert "<b id=pwned2>" in page.inner_text("#files-table")
        assert EVIL[:20] in page.inner_text("#recent-table")
        http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": f"echo '{quoted}'"})
        assert EVIL in wait_terminal(page, "id=pwned>b</b>")  # the terminal prints it as text
        page.goto(f"{admin.url}/#/env/{env}")
        page.wait_for_function("document.querySelector('#steps')?.innerText.includes('<script>')")
        time.sleep(0.5)
        assert page.evaluate("window.__pwned") is None
        assert page.query_selector("#pwned") is None and page.query_selector("#pwned2") is None
        assert page.query_selector("main img") is None and page.query_selector("main script") is None
    finally:
        http.delete(f"/api/v1/envs/{env}")


def test_attach_needs_the_token(admin: BackgroundServer, sandbox: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = admin.url.replace("http://", "ws://") + f"/api/v1/console/sandboxes/{sandbox}/attach"
    for protocols in (["rock-env"], ["rock-env", token_subprotocol("not-the-token")]):
        with pytest.raises(InvalidStatus) as info:
            connect(url, subprotocols=protocols, open_timeout=10)  # type: ignore[arg-type]
        assert info.value.response.status_code == 401
        assert b"Unauthorized" in info.value.response.body
    with connect(url, subprotocols=["rock-env", token_subprotocol(TOKEN)], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "rock-env"
        assert json.loads(ws.recv(timeout=10))["event"] == "hello"
    # the REST side of the console needs it too (the page itself holds no data and loads without it)
    assert httpx.get(admin.url + "/api/v1/console/overview").status_code == 401
    assert httpx.get(admin.url + "/").status_code == 200


def test_hub_pages(page: Any, admin: BackgroundServer, http: httpx.Client) -> None:
    spec = {
        "name": "console-sokoban",
        "version": 1,
        "description": "a <i>tiny</i> Sokoban",
        "tags": ["game"],
        "env": "game:Sokoban-v0-easy",
    }
    pushed = http.post("/api/v1/hub", json={"spec": spec})
    assert pushed.status_code in (200, 201), pushed.text
    page.goto(admin.url + "/#/hub")
    page.wait_for_selector("#hub a:text('console-sokoban')").click()
    page.wait_for_selector("h2:text('hub:console-sokoban-v1')")
    assert "a <i>tiny</i> Sokoban" in page.inner_text("main")
    assert page.query_selector("main i") is None


def test_screenshot(page: Any, admin: BackgroundServer, http: httpx.Client, sandbox: str) -> None:
    """Save a screenshot of a sandbox page with a live terminal (only if asked, for the README)."""
    target = os.environ.get("ROCK_ENV_CONSOLE_SCREENSHOT")
    if not target:
        return
    http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": "mkdir -p src && echo 'print(1)' > src/main.py"})
    attach(page, admin.url, sandbox)
    for cmd in ["ls -la", "python3 -c 'print(sum(range(10)))'", "cat src/main.py && false"]:
        http.post(f"/api/v1/sandboxes/{sandbox}/run", json={"cmd": cmd})
    wait_terminal(page, "[exit 1]")
    page.screenshot(path=target, full_page=True)
