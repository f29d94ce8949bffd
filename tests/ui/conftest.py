"""Browser tests of the web UI: Playwright (sync API) driving Debian's chromium against a live server.

Fixtures (shared with every UI test module; the slow ones module-scoped, one browser per module):

* ``browser`` — chromium headless, a fresh profile (Playwright gives every launch a new temporary
  user-data-dir); skipped loudly only when ``/usr/bin/chromium`` or the playwright package is absent.
* ``ui_live`` — a live server (SQLite), a client, a LocalAgent process and the demo flow registered
  (:class:`UiLive`); runs are made by the real agent.
* ``page`` — a 1280×800 page that collects console errors and uncaught exceptions and fails the
  test on any (``page.console_errors`` holds them; a test that expects one clears the list).
* ``screenshot(page, name)`` — writes ``<name>.png``: into ``docs/ui/`` (what docs/ui.md shows) when
  ``HEADWATER_UI_SCREENSHOTS=1``, else into the test's tmp folder (a test run leaves the docs alone).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from acceptance.conftest import Agents, register_script, wait_for, write_flow
from headwater.client import Client
from headwater.server.process import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DOCS_UI = Path(__file__).resolve().parents[2] / "docs" / "ui"
#: The longest a test waits for the UI to show something (it polls every 2 s).
WAIT_MS = 15_000

#: The flow the UI tests run: a small diamond with a retried task, parameters of three types,
#: and a task that holds the run Running until the test opens its gate.
DEMO_FLOW = """
import logging, os, pathlib, time
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

GATE = pathlib.Path({gate!r})
log = logging.getLogger("headwater")

@task
def extract(n):
    log.info("extracting %s rows", n)
    return list(range(n))

@task(max_retries=1, retry_delay=0)
def flaky(data):
    marker = GATE.with_name("flaky-" + os.environ.get("HEADWATER__CONTEXT__FLOW_RUN_ID", "x"))
    if not marker.exists():
        marker.write_text("tried")
        raise RuntimeError("the first attempt fails on purpose")
    return [i * 10 for i in data]

@task
def hold(data, wait):
    deadline = time.monotonic() + 120
    while wait and not GATE.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return data

@task
def load(a, b, fail):
    if fail:
        raise ValueError("load refused the data (fail=True)")
    log.warning("loaded %d rows", len(a) + len(b))
    return len(a)

with Flow("ui-demo", environment=LocalEnvironment(labels=["ui"])) as flow:
    n = Parameter("n", default=3)
    wait = Parameter("wait", default=False)
    fail = Parameter("fail", default=False)
    data = extract(n)
    load(flaky(data), hold(data, wait), fail)
"""


@dataclass
class UiLive:
    server: ServerProcess
    client: Client
    agents: Agents
    flow_id: str
    gate: Path

    def run(self, **parameters: Any) -> str:
        return self.client.create_flow_run(self.flow_id, parameters=parameters)

    def finished(self, run_id: str, timeout: float = 60) -> Any:
        return wait_for(
            lambda: (r := self.client.get_flow_run(run_id)).state in ("Success", "Failed", "Cancelled") and r,
            timeout, f"run {run_id} to finish",
        )  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"NO BROWSER: {CHROMIUM} is missing; run `bash scripts/ensure-system-deps.sh` as root")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("NO PLAYWRIGHT: the playwright package is missing; `pip install -e .[test]`")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def ui_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiLive]:
    home = tmp_path_factory.mktemp("ui-live")
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    client = Client(server.url)
    agents = Agents(server, home)
    try:
        client.create_project("acceptance")
        gate = home / "gate"
        flow_id = register_script(client, write_flow(home, "ui_demo", DEMO_FLOW.format(gate=str(gate))))
        # a cancelled run whose task holds on is stopped after 3 s, not the default 30
        agents.start("-l", "ui", "--name", "ui-agent", env={"HEADWATER__AGENT__CANCEL_GRACE": "3"})
        wait_for(lambda: client.list_agents(), timeout=30, what="the UI tests' agent")
        yield UiLive(server, client, agents, flow_id, gate)
    finally:
        agents.stop_all()
        client.close()
        server.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    opened.console_errors = errors
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()
    assert not errors, "the browser logged errors:\n" + "\n".join(errors)


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[..., Path]:
    """Screenshots go to ``docs/ui/`` with ``HEADWATER_UI_SCREENSHOTS=1`` (to renew the docs'), else to tmp."""
    folder = DOCS_UI if os.environ.get("HEADWATER_UI_SCREENSHOTS") == "1" else tmp_path

    def take(page: Any, name: str, width: int | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        if width is not None:
            size = page.viewport_size
            page.set_viewport_size({"width": width, "height": 844})
            page.wait_for_timeout(200)  # the layout settles
            page.screenshot(path=str(path), full_page=False)
            page.set_viewport_size(size)
        else:
            page.screenshot(path=str(path), full_page=False)
        return path

    return take
