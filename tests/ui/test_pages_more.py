"""The Flows, Agents, Projects and explain pages in a real browser, read as a person sees them.

Fixtures (a live server, a LocalAgent with label ``ui``, the demo flow with parameters
``n`` = 3, ``wait`` = False, ``fail`` = False) are in ``conftest.py``; every test fails on a
browser console error. Screenshots go to ``docs/ui/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acceptance.conftest import wait_for

from .conftest import UiLive


def runs_of(live: UiLive) -> int:
    return int(live.client.list_flow_runs_page(flow_id=live.flow_id, limit=1).total)


def expected_refusal(page: Any, status: int) -> None:
    """Take the browser's own log line of the refusal a test provoked (and nothing else) off the error list."""
    line = f"console.error: Failed to load resource: the server responded with a status of {status}"
    mine = [e for e in page.console_errors if e.startswith(line)]
    assert len(mine) == 1, page.console_errors
    page.console_errors.remove(mine[0])


def test_flows_list_and_one_version(ui_live: UiLive, page: Any, screenshot: Callable[..., Path]) -> None:
    page.goto(f"{ui_live.server.url}/#/flows")
    row = page.locator("tr[data-flow='ui-demo']")
    row.wait_for()
    assert "acceptance" in row.inner_text() and "v1" in row.inner_text() and "ui" in row.inner_text()
    assert "fail, n, wait" in row.inner_text()
    screenshot(page, "flows")

    row.get_by_role("link", name="ui-demo").click()
    page.get_by_role("heading", name=re.compile("ui-demo")).wait_for()
    assert page.url.endswith(f"#/flows/{ui_live.flow_id}")
    facts = page.locator("[data-page='flow']").inner_text()
    assert "acceptance" in facts and "7 task(s), 7 edge(s)" in facts
    assert "local" in page.locator("[data-spec='environment']").inner_text().lower()
    assert "local" in page.locator("[data-spec='storage']").inner_text().lower()
    # the run-now form: one field per parameter, the defaults filled in
    assert page.get_by_role("textbox", name="n integer").input_value() == "3"
    assert page.get_by_role("textbox", name="wait boolean").input_value() == "false"
    screenshot(page, "flow")


def test_run_now_checks_types_and_shows_the_servers_refusal(ui_live: UiLive, page: Any) -> None:
    page.goto(f"{ui_live.server.url}/#/flows/{ui_live.flow_id}")
    form = page.locator("[data-panel='run-now']")
    form.get_by_role("button", name="Run now").wait_for()
    before = runs_of(ui_live)

    page.get_by_role("textbox", name="n integer").fill("three")
    form.get_by_role("button", name="Run now").click()
    error = page.locator("#param-n-error")
    error.wait_for()
    assert "n must be an integer" in error.inner_text()
    assert page.get_by_role("textbox", name="n integer").get_attribute("aria-invalid") == "true"
    page.get_by_role("textbox", name="n integer").fill("2.5")
    form.get_by_role("button", name="Run now").click()
    page.wait_for_function("document.querySelector('#param-n-error').textContent.includes('2.5')")
    page.get_by_role("textbox", name="n integer").fill("2")
    page.get_by_role("textbox", name="wait boolean").fill("maybe")
    form.get_by_role("button", name="Run now").click()
    page.wait_for_function("document.querySelector('#param-wait-error').textContent.includes('boolean')")
    assert page.locator("#param-n-error").inner_text() == ""
    assert runs_of(ui_live) == before, "a run was created from a form with a wrong type"

    # the server's 422 (a run name over 200 characters) under the form, nothing created
    page.get_by_role("textbox", name="wait boolean").fill("false")
    page.get_by_text("More options").click()
    page.get_by_label("Run name").fill("x" * 201)
    form.get_by_role("button", name="Run now").click()
    refusal = form.locator(".notice.error")
    refusal.wait_for()
    assert "run_name" in refusal.inner_text()
    assert runs_of(ui_live) == before
    expected_refusal(page, 422)

    page.get_by_label("Run name").fill("from-the-ui")
    form.get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    run = ui_live.client.get_flow_run(run_id)
    assert run.parameters == {"n": 2, "wait": False, "fail": False} and run.run_name == "from-the-ui"
    assert ui_live.finished(run_id).state == "Success"


def test_agents_page_shows_health_and_the_runs_an_agent_holds(
    ui_live: UiLive, page: Any, screenshot: Callable[..., Path]
) -> None:
    held = ui_live.run(wait=True)
    wait_for(lambda: ui_live.client.get_flow_run(held).state == "Running", 60, "the held run to be Running")
    try:
        page.goto(f"{ui_live.server.url}/#/agents")
        row = page.locator("tr[data-agent='ui-agent']")
        row.wait_for()
        text = row.inner_text()
        assert "local" in text and "ui" in text and "healthy" in text and "ago" in text
        link = row.locator(f"a[href='#/runs/{held}']")
        link.wait_for()
        assert "Running" in row.inner_text()
        screenshot(page, "agents")
    finally:
        ui_live.gate.touch()
    assert ui_live.finished(held).state == "Success"


def test_projects_list_create_and_a_duplicate(ui_live: UiLive, page: Any, screenshot: Callable[..., Path]) -> None:
    page.goto(f"{ui_live.server.url}/#/projects")
    page.locator("tr[data-project='acceptance']").wait_for()
    assert page.locator("tr[data-project='acceptance'] td").nth(1).inner_text() == "1"

    page.get_by_label("New project").fill("made-in-the-browser")
    page.get_by_role("button", name="Create project").click()
    page.locator("tr[data-project='made-in-the-browser']").wait_for()
    assert "made-in-the-browser" in [p.name for p in ui_live.client.list_projects()]

    page.get_by_label("New project").fill("acceptance")
    page.get_by_role("button", name="Create project").click()
    error = page.locator("#project-name-error")
    page.wait_for_function("document.querySelector('#project-name-error').textContent.length > 0")
    assert "project 'acceptance' already exists" in error.inner_text()
    assert [p.name for p in ui_live.client.list_projects()].count("acceptance") == 1
    expected_refusal(page, 409)
    page.get_by_label("New project").fill("")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_function("document.querySelector('#project-name-error').textContent.includes('name')")
    screenshot(page, "projects")


def test_explain_a_run_whose_label_no_agent_has(ui_live: UiLive, page: Any, screenshot: Callable[..., Path]) -> None:
    waiting = ui_live.client.create_flow_run(ui_live.flow_id, labels=["ui", "gpu"])
    page.goto(f"{ui_live.server.url}/#/runs/{waiting}/explain")
    panel = page.locator("[data-panel='explain']")
    panel.wait_for()
    page.get_by_role("heading", name="Why is this run waiting?").wait_for()
    message = panel.locator(".explain-message")
    assert message.get_attribute("data-matched") == "false"
    assert "no live agent can take this run" in message.inner_text()
    row = panel.locator("tr[data-agent='ui-agent']")
    assert row.locator(".label.missing").inner_text() == "gpu"
    assert "no" in row.inner_text() and "lacks label(s) gpu" in row.inner_text()
    screenshot(page, "explain")
    assert ui_live.client.get_flow_run(waiting).state == "Scheduled"
    ui_live.client.cancel_flow_run(waiting)
