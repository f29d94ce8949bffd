"""A long history doesn't slow anything down (issue 15). Prints one JSON document.

    .venv/bin/python bench/history.py [--runs 1000000] [--database sqlite|postgres] [--rounds 5] [--quick]

For each database, two live server processes: one on a **baseline** database and one on a
**full** one (``--runs`` finished runs made by ``tests/history_fill.py``: 2 task runs, 3 log
lines, 2 states and 1-2 labels each, over about 400 days; ``ANALYZE`` after). The baseline
holds ``--baseline-runs`` runs of the same kind (default 10,000, so every page a figure asks
for is full; ``0``: an empty database, whose filtered pages are empty, so that comparison
weighs 100 runs of JSON against none as much as the history). The same requests go to both,
in alternating rounds (which server goes first alternates too; this machine's speed drifts),
and every figure is the median over rounds of each round's median, with its ratio
**full / baseline** (keys ``empty_ms``: the baseline). Target: ≤ 2×.

- ``claim``: a claim of 1 run (limit 1) with 20 due runs labelled for it; ms per claim call.
- ``create``: ``POST /runs``; ms per call.
- ``list_*``: the first page (100) of ``GET /runs``: unfiltered, ``state=Failed``,
  ``flow_name=hist-flow-7``, ``label=team-3`` (10 % of runs), ``label=gpu`` (1 %), and,
  reported beside the target, ``offset=100000`` (a deep page, full database only: empty has no such page).
- ``logs``: ``GET /runs/{id}/logs`` first page of an old run (the oldest of the fill; on the
  empty database a run the bench made).
- ``prune``: on the full database, ``POST /runs/prune`` deleting the oldest ``--prune-runs`` runs
  (batches of 1,000) while a claimer claims; claim latency during the prune against the same
  claims just before it, and runs deleted per second.
- ``plans``: the plan of every query of ``list_flow_runs`` and ``read_logs`` and of the claim's
  candidates on the full database (EXPLAIN QUERY PLAN / EXPLAIN), and the indexes they use.

The SQLite fill is kept in ``--cache`` (default ``/tmp/headwater-history``) and copied for each
run (the bench writes to its copy); ``--rebuild`` makes it again. PostgreSQL is filled afresh
in a throwaway cluster each run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from headwater.client import Client
from headwater.server.database.engine import create_db_engine, database_url
from headwater.server.process import ServerProcess
from history_fill import FLOWS, STEP, fill, flow_id, plans, run_id

QUIET = {"HEADWATER__SERVER__HEARTBEAT_TIMEOUT": "3600"}
LIST_CASES: dict[str, dict[str, Any]] = {
    "list_unfiltered": {},
    "list_state": {"state": "Failed"},
    "list_flow": {"flow_name": "hist-flow-7"},
    "list_label": {"label": "team-3"},
    "list_label_rare": {"label": "gpu"},
}
TARGETED = ["claim", "create", "list_unfiltered", "list_state", "list_flow", "list_label", "list_label_rare", "logs"]


def ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 3)


def timed(call: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


class Target:
    """One server and what the bench made on it."""

    def __init__(self, name: str, server: ServerProcess, old_run: str | None) -> None:
        self.name = name
        self.server = server
        self.client = Client(server.url)
        self.agent = self.client.register_agent(f"history-{name}", "bench", ["hist-claim"])
        self.flow = flow_id(0)
        if old_run is None:  # the empty database: a run of its own, with 3 log lines
            old_run = self.client.create_flow_run(self.flow, labels=["hist-logs"])
            self.client.write_logs(old_run, [{"message": f"line {i}"} for i in range(3)])
        self.old_run = old_run

    def round(self, samples: int) -> dict[str, float]:
        c = self.client
        figures: dict[str, float] = {}
        for _ in range(samples):
            c.create_flow_run(self.flow, labels=["hist-claim"])
        figures["claim"] = ms(timed(lambda: c.claim_flow_runs(self.agent, ["hist-claim"], limit=1), samples))
        figures["create"] = ms(timed(lambda: c.create_flow_run(self.flow, labels=["hist-new"]), samples))
        for name, filters in LIST_CASES.items():
            figures[name] = ms(timed(lambda f=filters: c.list_flow_runs_page(limit=100, **f), samples))
        figures["logs"] = ms(timed(lambda: c.read_logs(self.old_run), samples))
        return figures


def prune_during_claims(target: Target, older_than: float, samples: int) -> dict[str, Any]:
    """Claim latency just before and during a prune (a claimer claiming 1 run at a time)."""
    c = target.client
    for _ in range(samples * 20):
        c.create_flow_run(target.flow, labels=["hist-claim"])
    before = timed(lambda: c.claim_flow_runs(target.agent, ["hist-claim"], limit=1), samples)
    done: dict[str, Any] = {}

    def prune() -> None:  # as `headwater runs prune` does: request after request until none remain
        with Client(target.server.url, timeout=120) as own:
            start = time.perf_counter()
            runs = batches = requests = 0
            while True:
                result = own.prune_flow_runs(older_than, max_runs=100_000)
                runs, batches, requests = runs + result.runs, batches + result.batches, requests + 1
                if not (result.runs and result.remaining):
                    break
            done.update(seconds=time.perf_counter() - start, runs=runs, batches=batches, requests=requests)

    thread = threading.Thread(target=prune)
    thread.start()
    during: list[float] = []
    while thread.is_alive() and len(during) < samples * 19:
        during += timed(lambda: c.claim_flow_runs(target.agent, ["hist-claim"], limit=1), 1)
    thread.join()
    return {
        "runs_deleted": done["runs"],
        "batches": done["batches"],
        "requests": done["requests"],
        "seconds": round(done["seconds"], 2),
        "runs_deleted_per_s": round(done["runs"] / done["seconds"], 1),
        "claims_measured_during": len(during),
        "claim_ms_before_median": ms(before),
        "claim_ms_during_median": ms(during),
        "claim_ms_during_max": round(max(during) * 1000, 1),
        "ratio_during_to_before": round(statistics.median(during) / statistics.median(before), 2),
    }


def query_plans(url: str) -> dict[str, Any]:
    """The plans of the list, logs and claim-candidate queries on the full database, and their indexes."""
    from headwater.server.models.flow_runs import list_flow_runs
    from headwater.server.models.logs import read_logs
    from headwater.server.models.work import _candidates

    engine = create_db_engine(url)
    oldest = run_id(1)
    calls: dict[str, Any] = {
        "list_unfiltered": lambda s: list_flow_runs(s),
        "list_state": lambda s: list_flow_runs(s, state=["Failed"]),
        "list_two_states": lambda s: list_flow_runs(s, state=["Failed", "Cancelled"]),
        "list_flow": lambda s: list_flow_runs(s, flow_name="hist-flow-7"),
        "list_label": lambda s: list_flow_runs(s, label=["team-3"]),
        "list_deep": lambda s: list_flow_runs(s, offset=100_000),
        "logs": lambda s: read_logs(s, oldest),
        "claim_candidates": lambda s: s.execute(
            _candidates(True), {"p_now": datetime.datetime.now(datetime.UTC), "p_limit": 10, "p_labels": ["x"]}
        ).all(),
    }
    found: dict[str, Any] = {}
    for name, call in calls.items():
        text = plans(engine, call)
        found[name] = {
            "indexes": sorted(set(re.findall(r"\b(ix_\w+|sqlite_autoindex_\w+|\w+_pkey)\b", "\n".join(text)))),
            "full_scans": [line.strip() for p in text for line in p.splitlines()
                           if re.search(r"(^\s*SCAN (flow_runs|logs|task_runs|flow_run_labels)\b(?! USING)"
                                        r"|Seq Scan on (flow_runs|logs|task_runs|flow_run_labels))", line)],
            "sorts": [line.strip() for p in text for line in p.splitlines() if "TEMP B-TREE" in line or "Sort" in line],
        }  # fmt: skip
    engine.dispose()
    return found


def sqlite_full(cache: Path, runs: int, rebuild: bool, folder: Path) -> str:
    cached = cache / f"history-{runs}.db"
    if rebuild or not cached.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        engine = create_db_engine(f"sqlite:///{partial}")
        fill(engine, runs, datetime.datetime.now(datetime.UTC).replace(tzinfo=None), progress=log)
        raw = engine.raw_connection()
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one file to copy
        raw.close()
        engine.dispose()
        partial.rename(cached)
    copy = folder / "full.db"
    shutil.copyfile(cached, copy)
    return f"sqlite:///{copy}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(kind: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = None
    if kind == "sqlite":
        empty_url = f"sqlite:///{folder / 'empty.db'}"
        full_url = sqlite_full(Path(args.cache), args.runs, args.rebuild, folder)
    else:
        from pg import PostgresCluster

        cluster = PostgresCluster().start()
        empty_url, full_url = cluster.create_database("empty"), cluster.create_database("full")
        engine = create_db_engine(database_url(full_url, folder))
        fill(engine, args.runs, datetime.datetime.now(datetime.UTC).replace(tzinfo=None), progress=log)
        engine.dispose()
    engine = create_db_engine(database_url(empty_url, folder))
    fill(engine, args.baseline_runs, datetime.datetime.now(datetime.UTC).replace(tzinfo=None), progress=log)
    engine.dispose()
    pairs = (("empty", empty_url), ("full", full_url))
    servers = [ServerProcess(folder / n, u, env=QUIET).start(timeout=180) for n, u in pairs]
    try:
        log(f"{kind}: plans")
        found_plans = query_plans(database_url(full_url, folder))
        small = run_id(1) if args.baseline_runs else None  # its oldest run's logs
        targets = [Target("empty", servers[0], small), Target("full", servers[1], run_id(1))]
        rounds: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
        for r in range(args.rounds):
            log(f"{kind}: round {r + 1}/{args.rounds}")
            for target in targets if r % 2 == 0 else targets[::-1]:
                rounds[target.name].append(target.round(args.samples))
        deep = ms(timed(lambda: targets[1].client.list_flow_runs_page(limit=100, offset=100_000), args.samples))
        figures: dict[str, Any] = {}
        for name in rounds["empty"][0]:
            empty = statistics.median(r[name] for r in rounds["empty"])
            full = statistics.median(r[name] for r in rounds["full"])
            ratios = [f[name] / e[name] for e, f in zip(rounds["empty"], rounds["full"], strict=True)]
            figures[name] = {
                "empty_ms": round(empty, 2),
                "full_ms": round(full, 2),
                "ratio": round(full / empty, 2),
                "ratio_per_round": [round(x, 2) for x in ratios],
                "target": 2.0 if name in TARGETED else None,
            }
        figures["list_deep_offset_100000_full_ms"] = deep
        log(f"{kind}: prune")
        engine = create_db_engine(database_url(full_url, folder))
        with engine.connect() as conn:
            first = conn.exec_driver_sql("SELECT min(created) FROM flow_runs").scalar_one()
        engine.dispose()
        first = datetime.datetime.fromisoformat(str(first)).replace(tzinfo=None)
        cutoff = first + datetime.timedelta(seconds=STEP * args.prune_runs + 30)  # runs end 60 s after creation
        window = (datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - cutoff).total_seconds()
        try:
            prune = prune_during_claims(targets[1], window, args.samples)
        except Exception as exc:  # the figures above are still worth printing
            prune = {"error": repr(exc)}
        for target in targets:
            target.client.close()
    finally:
        for server in servers:
            server.stop()
        if cluster is not None:
            cluster.stop()
    return {
        "runs": args.runs,
        "baseline_runs": args.baseline_runs,
        "per_run": {"task_runs": 2, "log_lines": 3, "states": 2, "labels": "1 (team-k), +gpu for 1 %"},
        "figures": figures,
        "met": all(f["ratio"] <= 2.0 for n, f in figures.items() if isinstance(f, dict) and f["target"]),
        "prune_during_claims": prune,
        "plans": found_plans,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="finished runs in the full database")
    parser.add_argument("--database", choices=["sqlite", "postgres"], help="one database only")
    parser.add_argument(
        "--baseline-runs", type=int, default=10_000,
        help="runs in the baseline database (0: empty); 10,000 fill every page the figures ask for (gpu: 100 runs)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20, help="requests per figure per round")
    parser.add_argument("--prune-runs", type=int, default=20_000, help="the oldest runs the prune deletes")
    parser.add_argument("--cache", default="/tmp/headwater-history", help="where the SQLite fill is kept")
    parser.add_argument("--rebuild", action="store_true", help="make the SQLite fill again")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 2 rounds of 5 samples (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds, args.samples, args.prune_runs = 10_000, 2, 5, 1_000
    assert FLOWS > 7  # list_flow asks for hist-flow-7
    results: dict[str, Any] = {}
    for kind in (args.database,) if args.database else ("sqlite", "postgres"):
        with (
            tempfile.TemporaryDirectory(prefix=f"hw-history-{kind}-") as folder,
            contextlib.redirect_stdout(sys.stderr),
        ):
            results[kind] = measure(kind, Path(folder), args)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
