"""Web UI benchmarks (issue 14). Prints one JSON document; server, client and browser on this machine.

    .venv/bin/python bench/ui.py [--quick]

Figures (SQLite, the embedded default):
- ``runs_page``: the API calls the Runs page (``pages/runs.js``) and the shell (``app.js``) make when
  the page loads — ``GET /whoami``, ``GET /runs?offset=0&limit=25``, ``GET /agents`` — timed
  together, with 10,000 runs in the database; baseline: ``GET /health`` in the same run (the HTTP
  floor). Target: the page's calls ≤ 500 ms (median).
- ``run_page_dag``: a run of a registered 1,000-task flow (never run: it stays Scheduled) opened in
  the test browser (Playwright, Debian chromium); milliseconds from the start of the navigation to
  the DAG's 1,000th node in the DOM. Target ≤ 2,000 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from headwater import Flow, task
from headwater.client import Client
from headwater.server.process import ServerProcess
from headwater.storage import Local
from stats import summary

CHROMIUM = "/usr/bin/chromium"
PAGE_SIZE = 25  # pages/runs.js


@task
def step(a: int = 0, b: int = 0) -> int:
    return a + b + 1


def wide_flow(n: int, width: int = 25) -> Flow:
    """``n`` tasks in layers of ``width``, each fed by two of the layer above: edges that cross, to lay out."""
    with Flow(f"ui-bench-{n}") as flow:
        layer = [step() for _ in range(width)]
        made = width
        while made < n:
            size = min(width, n - made)
            layer = [step(a=layer[i % len(layer)], b=layer[(i * 7 + 3) % len(layer)]) for i in range(size)]
            made += size
    return flow


def fill_runs(client: Client, flow_id: str, n: int, threads: int = 4) -> float:
    """Create ``n`` runs from ``threads`` clients; returns runs per second."""

    def make(count: int) -> None:
        with Client(client.api_url) as own:
            for _ in range(count):
                own.create_flow_run(flow_id)

    share = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=make, args=(c,)) for c in share]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return n / (time.perf_counter() - start)


def runs_page(client: Client, samples: int) -> dict[str, Any]:
    http = client._http  # the same connection pool the UI's calls would share
    health, page = [], []
    for _ in range(samples):  # alternate, so drift of the machine's speed hits both alike
        start = time.perf_counter()
        http.request("GET", "/health")
        health.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        http.request("GET", "/whoami")
        answer = http.request("GET", "/runs", params={"offset": 0, "limit": PAGE_SIZE})
        http.request("GET", "/agents")
        page.append((time.perf_counter() - start) * 1000)
    assert len(answer["flow_runs"]) == PAGE_SIZE
    return {
        "runs_in_database": answer["total"],
        "calls": ["GET /whoami", f"GET /runs?offset=0&limit={PAGE_SIZE}", "GET /agents"],
        "page_ms": summary(page),
        "baseline_health_ms": summary(health),
        "target_median_ms": 500,
    }


def run_page_dag(server: ServerProcess, client: Client, folder: Path, tasks: int, samples: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    flow = wide_flow(tasks)
    flow.storage = Local(directory=str(folder / "flows"))
    flow_id = client.register(flow, "bench-ui")
    run_id = client.create_flow_run(flow_id)
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for _ in range(samples):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(f"{server.url}/#/runs")  # the shell loaded, as when a person clicks a run
            page.wait_for_selector("table.runs")
            start = time.perf_counter()
            page.evaluate(f"location.hash = '#/runs/{run_id}'")
            page.wait_for_function(
                f"document.querySelectorAll('svg.dag g.node').length >= {tasks}", timeout=60_000, polling="raf"
            )
            times.append((time.perf_counter() - start) * 1000)
            context.close()
        browser.close()
    assert client.get_flow_run(run_id).state == "Scheduled"
    return {"tasks": tasks, "navigation_to_last_node_ms": summary(times), "target_ms": 2000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 runs and fewer samples (a smoke run)")
    args = parser.parse_args()
    runs = 1000 if args.quick else 10_000
    samples = 5 if args.quick else 30
    with tempfile.TemporaryDirectory(prefix="hw-bench-ui-") as tmp:
        folder = Path(tmp)
        server = ServerProcess(folder, f"sqlite:///{folder / 'hw.db'}").start()
        try:
            with Client(server.url) as client:
                client.create_project("bench-ui")
                small = Flow("ui-bench-small")
                with small:
                    step()
                small.storage = Local(directory=str(folder / "flows"))
                created_per_s = fill_runs(client, client.register(small, "bench-ui"), runs)
                results: dict[str, Any] = {"created_runs_per_s": round(created_per_s, 1)}
                results["runs_page"] = runs_page(client, samples)
                results["run_page_dag"] = run_page_dag(server, client, folder, 1000, 3 if args.quick else 10)
        finally:
            server.stop()
    results["met"] = {
        "runs_page_median_le_500ms": results["runs_page"]["page_ms"]["median"] <= 500,
        "run_page_dag_median_le_2s": results["run_page_dag"]["navigation_to_last_node_ms"]["median"] <= 2000,
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
