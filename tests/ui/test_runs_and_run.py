"""The Runs and Run pages in a real browser, against a live server whose runs a real LocalAgent makes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from headwater.server.process import ServerProcess

from .conftest import UiLive


def test_the_runs_page_lists_runs_newest_first_and_updates_live(
    ui_live: UiLive, page: Any, screenshot: Callable[..., Path]
) -> None:
    done = ui_live.run(n=2)
    ui_live.finished(done)
    page.goto(f"{ui_live.server.url}/")
    expect(page.locator(f'tr[data-run="{done}"]')).to_be_visible()
    assert page.locator("nav a[aria-current=page]").inner_text() == "Runs"

    # a run made after the page opened appears, and its state changes, without a reload
    fresh = ui_live.run(n=4)
    row = page.locator(f'tr[data-run="{fresh}"]')
    expect(row).to_be_visible()
    assert page.locator("tr[data-run]").first.get_attribute("data-run") == fresh  # newest first
    expect(row.locator(".state")).to_have_class(re.compile(r"\bstate-Success\b"), timeout=60_000)
    expect(row.locator(".state")).to_have_text("Success")
    expect(row.locator(".agent")).to_have_text("ui-agent")
    assert re.fullmatch(r"\d+(\.\d)? s|\d+ ms", row.locator(".duration").inner_text())

    # filter by state: only failed runs
    failed = ui_live.run(fail=True)
    assert ui_live.finished(failed).state == "Failed"
    page.select_option("#f-state", "Failed")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(page.locator(f'tr[data-run="{failed}"] .state')).to_have_class(re.compile(r"\bstate-Failed\b"))
    assert "state=Failed" in page.url
    # by flow name: no flow of that name
    page.select_option("#f-state", "")
    page.fill("#f-flow_name", "no-such-flow")
    page.click("form.filters button[type=submit]")
    expect(page.locator("td.empty")).to_contain_text("No runs match")
    page.click("text=Clear")
    expect(page.locator(f'tr[data-run="{fresh}"]')).to_be_visible()
    # since after until: said next to the form, nothing asked
    page.fill("#f-since", "2030-01-02T00:00:00")
    page.fill("#f-until", "2030-01-01T00:00:00")
    page.click("form.filters button[type=submit]")
    expect(page.locator("form.filters + .field-error")).to_contain_text("Since is after Until")
    page.click("text=Clear")
    expect(page.locator(f'tr[data-run="{fresh}"]')).to_be_visible()
    screenshot(page, "runs")
    screenshot(page, "runs-mobile", width=390)


def test_the_run_page_shows_a_finished_run(ui_live: UiLive, page: Any, screenshot: Callable[..., Path]) -> None:
    run_id = ui_live.run(n=3)
    assert ui_live.finished(run_id).state == "Success"
    page.goto(f"{ui_live.server.url}/#/runs/{run_id}")
    expect(page.locator("#run-state .state")).to_have_class(re.compile(r"\bstate-Success\b"))
    expect(page.locator("#parameters")).to_contain_text("n")
    expect(page.locator("#parameters")).to_contain_text("3")
    expect(page.locator("#run-agent")).to_have_text("ui-agent")

    # the task graph: one node per task of the registered metadata, one edge per upstream → downstream pair
    metadata = httpx.get(f"{ui_live.server.api}/flows/{ui_live.flow_id}").json()["metadata"]
    slugs = {t["slug"] for t in metadata["tasks"]}
    pairs = {(e["upstream"], e["downstream"]) for e in metadata["edges"]}
    nodes = page.locator("svg.dag g.node")
    expect(nodes).to_have_count(len(slugs))
    assert set(nodes.evaluate_all("ns => ns.map(n => n.dataset.slug)")) == slugs
    drawn = page.locator("svg.dag path.edge").evaluate_all("es => es.map(e => [e.dataset.from, e.dataset.to])")
    assert {tuple(e) for e in drawn} == pairs
    expect(page.locator("svg.dag g.node.state-Success")).to_have_count(len(slugs))
    # every edge goes left to right (layers)
    xs = dict(page.locator("svg.dag g.node").evaluate_all(
        "ns => ns.map(n => [n.dataset.slug, n.transform.baseVal[0].matrix.e])"))  # fmt: skip
    assert all(xs[a] < xs[b] for a, b in pairs)

    # the timeline, with the retried task's attempts
    flaky = next(t["slug"] for t in metadata["tasks"] if t["name"] == "flaky")
    expect(page.locator(f'.gantt-row[data-slug="{flaky}"] .gantt-name')).to_contain_text("×2")
    expect(page.locator(".gantt-row .gantt-bar.state-Success").first).to_be_visible()
    assert "null" not in page.locator("#gantt").inner_text()
    # the state history
    history = page.locator(".history-row .state")
    expect(history.last).to_have_text("Success")
    states = history.all_inner_texts()
    assert states[0] == "Scheduled" and "Running" in states
    # logs, filterable by level and task
    logs = page.locator("#logs")
    expect(logs).to_contain_text("extracting 3 rows")
    expect(logs).to_contain_text("loaded 6 rows")
    page.select_option("#log-level", "WARNING")
    expect(logs).not_to_contain_text("extracting 3 rows")
    expect(logs).to_contain_text("loaded 6 rows")
    page.select_option("#log-level", "DEBUG")
    # environment and storage from the flow's metadata
    expect(page.locator("section:has(h2:text('Environment'))")).to_contain_text("local")
    expect(page.locator("section:has(h2:text('Storage'))")).to_contain_text("local")
    assert page.locator("#cancel").count() == 0  # a finished run has nothing to cancel
    screenshot(page, "run")
    screenshot(page, "run-mobile", width=390)
    page.locator("section:has(h2:text('Task graph'))").scroll_into_view_if_needed()
    screenshot(page, "run-graph")
    page.locator("section:has(h2:text('Logs'))").scroll_into_view_if_needed()
    screenshot(page, "run-logs")


def test_a_running_run_updates_live_and_can_be_cancelled(ui_live: UiLive, page: Any) -> None:
    ui_live.gate.unlink(missing_ok=True)
    held, cancelled = ui_live.run(wait=True), ui_live.run(wait=True)
    metadata = httpx.get(f"{ui_live.server.api}/flows/{ui_live.flow_id}").json()["metadata"]
    hold = next(t["slug"] for t in metadata["tasks"] if t["name"] == "hold")

    page.goto(f"{ui_live.server.url}/#/runs/{cancelled}")
    expect(page.locator("#run-state .state")).to_have_text("Running", timeout=60_000)
    expect(page.locator(f'svg.dag g.node[data-slug="{hold}"]')).to_have_class(re.compile(r"state-Running"))
    page.click("#cancel")
    expect(page.locator("#run-state .state")).to_have_text("Cancelled", timeout=60_000)
    assert ui_live.client.get_flow_run(cancelled).state == "Cancelled"

    page.goto(f"{ui_live.server.url}/#/runs/{held}")
    expect(page.locator(f'svg.dag g.node[data-slug="{hold}"]')).to_have_class(re.compile(r"state-Running"),
                                                                             timeout=60_000)  # fmt: skip
    expect(page.locator("#cancel")).to_be_visible()
    ui_live.gate.write_text("open")
    # no reload: the graph, the badge and the logs follow the run to its end
    expect(page.locator("#run-state .state")).to_have_text("Success", timeout=60_000)
    expect(page.locator(f'svg.dag g.node[data-slug="{hold}"]')).to_have_class(re.compile(r"state-Success"))
    expect(page.locator("#logs")).to_contain_text("loaded 6 rows")
    expect(page.locator("#cancel")).to_have_count(0)


def test_run_again_checks_parameter_types_next_to_the_field(ui_live: UiLive, page: Any) -> None:
    run_id = ui_live.run(n=3)
    ui_live.finished(run_id)
    page.goto(f"{ui_live.server.url}/#/runs/{run_id}")
    expect(page.locator("#param-n")).to_have_value("3")
    before = ui_live.client.list_flow_runs_page(limit=1).total
    page.fill("#param-n", "three")
    page.fill("#param-fail", "maybe")
    page.click("#rerun button[type=submit]")
    expect(page.locator("#param-n-error")).to_contain_text("n expects a number")
    expect(page.locator("#param-fail-error")).to_contain_text("fail expects true or false")
    assert page.locator("#param-n").get_attribute("aria-invalid") == "true"
    assert page.locator("#param-wait-error").inner_text() == ""
    assert ui_live.client.list_flow_runs_page(limit=1).total == before  # nothing was created
    page.fill("#param-n", "5")
    page.fill("#param-fail", "false")
    page.click("#rerun button[type=submit]")
    page.wait_for_url(re.compile(r"#/runs/(?!" + run_id + ")[^/]+$"))
    new_id = page.url.rsplit("/", 1)[1]
    assert ui_live.client.get_flow_run(new_id).parameters == {"n": 5, "wait": False, "fail": False}
    expect(page.locator("#parameters")).to_contain_text("5")
    assert ui_live.finished(new_id).state == "Success"


def test_an_unknown_run_or_route_is_a_real_not_found_page(ui_live: UiLive, page: Any) -> None:
    page.goto(f"{ui_live.server.url}/#/runs/no-such-run")
    expect(page.locator("[data-page=not-found]")).to_contain_text("Not found")
    expect(page.locator("[data-page=not-found]")).to_contain_text("no-such-run")
    # the browser logs the API's 404 answer itself; that one is expected
    assert all("404" in e for e in page.console_errors), page.console_errors
    page.console_errors.clear()
    page.goto(f"{ui_live.server.url}/#/no/such/page")
    expect(page.locator("[data-page=not-found]")).to_contain_text("There is no page at #/no/such/page")
    page.click("text=Go to the runs")
    expect(page.locator("[data-page=runs]")).to_be_visible()


def test_a_thousand_task_flow_draws_in_under_two_seconds(ui_live: UiLive, page: Any) -> None:
    width, layers = 25, 40  # 1,000 tasks, each layer's tasks depending on two of the layer before
    tasks = [{"slug": f"t{i}", "name": f"task {i}", "type": "headwater.core.task.Task"} for i in range(width * layers)]
    edges = [
        {"upstream": f"t{(layer - 1) * width + (i + k) % width}", "downstream": f"t{layer * width + i}"}
        for layer in range(1, layers) for i in range(width) for k in (0, 7)
    ]  # fmt: skip
    metadata = {"headwater_version": "0", "name": "big", "tasks": tasks, "edges": edges, "labels": ["nowhere"]}
    flow = httpx.post(f"{ui_live.server.api}/flows", json={"project_name": "acceptance", "metadata": metadata})
    assert flow.status_code == 201, flow.text
    run_id = ui_live.client.create_flow_run(flow.json()["id"])  # labelled "nowhere": stays Scheduled
    started = time.monotonic()
    page.goto(f"{ui_live.server.url}/#/runs/{run_id}")
    expect(page.locator("svg.dag g.node")).to_have_count(1000)
    shown_in = time.monotonic() - started
    drawn_ms = int(page.locator("#dag").get_attribute("data-draw-ms"))
    assert drawn_ms <= 2000, f"the layout and drawing took {drawn_ms} ms"
    assert page.locator("svg.dag path.edge").count() == len(edges)
    assert shown_in < 10, f"the page took {shown_in:.1f}s to show the graph"
    # layered: every edge goes one layer right
    xs = page.locator("svg.dag g.node").evaluate_all(
        "ns => Object.fromEntries(ns.map(n => [n.dataset.slug, n.transform.baseVal[0].matrix.e]))")  # fmt: skip
    assert all(xs[e["upstream"]] < xs[e["downstream"]] for e in edges)


def test_the_banner_shows_while_the_server_is_down_and_the_page_recovers(tmp_path: Path, page: Any) -> None:
    home = tmp_path / "down"
    database = f"sqlite:///{home / 'hw.db'}"
    server = ServerProcess(home, database).start()
    try:
        flow = _register_tiny_flow(server)
        first = httpx.post(f"{server.api}/runs", json={"flow_id": flow}).json()["id"]
        page.goto(f"{server.url}/#/runs")
        expect(page.locator(f'tr[data-run="{first}"]')).to_be_visible()
        server.stop()
        banner = page.locator("#banner")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("not answering")
        # the browser logs each refused connection; those are what this test provokes
        assert all("ERR_CONNECTION_REFUSED" in e for e in page.console_errors), page.console_errors
        page.console_errors.clear()
        server = ServerProcess(home, database, port=server.port).start()
        second = httpx.post(f"{server.api}/runs", json={"flow_id": flow}).json()["id"]
        expect(banner).to_be_hidden()
        expect(page.locator(f'tr[data-run="{second}"]')).to_be_visible()
        expect(page.locator(f'tr[data-run="{first}"]')).to_be_visible()
        page.console_errors[:] = [e for e in page.console_errors if "ERR_CONNECTION_REFUSED" not in e]
    finally:
        server.stop()


def _register_tiny_flow(server: ServerProcess) -> str:
    assert httpx.post(f"{server.api}/projects", json={"name": "p"}).status_code == 201
    metadata = {"headwater_version": "0", "name": "tiny", "labels": ["nowhere"],
                "tasks": [{"slug": "a", "name": "a", "type": "headwater.core.task.Task"}]}  # fmt: skip
    made = httpx.post(f"{server.api}/flows", json={"project_name": "p", "metadata": metadata})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_with_auth_the_page_asks_for_a_token_and_a_read_only_token_sees_no_writes(tmp_path: Path, page: Any) -> None:
    from server.test_auth_and_startup import make_token

    home = tmp_path / "auth"
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}", env={"HEADWATER__SERVER__AUTH": "true"})
    admin, reader = make_token(server, "admin"), make_token(server, "agent")
    server.start()
    try:
        headers = {"Authorization": f"Bearer {admin}"}
        assert httpx.post(f"{server.api}/projects", json={"name": "p"}, headers=headers).status_code == 201
        metadata = {"headwater_version": "0", "name": "tiny", "labels": ["nowhere"],
                    "tasks": [{"slug": "a", "name": "a", "type": "headwater.core.task.Task"}]}  # fmt: skip
        flow = httpx.post(f"{server.api}/flows", json={"project_name": "p", "metadata": metadata}, headers=headers)
        run_id = httpx.post(f"{server.api}/runs", json={"flow_id": flow.json()["id"]}, headers=headers).json()["id"]
        page.goto(f"{server.url}/#/runs/{run_id}")  # the page loads without a token, then asks for one
        expect(page.locator("#token-dialog")).to_be_visible()
        page.fill("#token-input", reader)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#run-state .state")).to_have_text("Scheduled")
        # the browser logs the 401 answers that made the page ask; those are expected, nothing else
        assert page.console_errors and all("401" in e for e in page.console_errors), page.console_errors
        page.console_errors.clear()
        expect(page.locator("#whoami")).to_contain_text("read-only")
        assert page.locator("#cancel").count() == 0 and page.locator("#rerun").count() == 0
        page.evaluate("localStorage.setItem('headwater.token', arguments[0])".replace("arguments[0]", repr(admin)))
        page.reload()
        expect(page.locator("#cancel")).to_be_visible()
        expect(page.locator("#rerun")).to_be_visible()
        assert "read-only" not in page.locator("#whoami").inner_text()
    finally:
        page.goto("about:blank")  # the page stops polling first: a poll of the stopped server would be an error
        server.stop()
