"""Idle agents (issue 15): what long-polling agents that have nothing to do cost a server. Prints JSON.

    .venv/bin/python bench/agents.py [--agents 60,1000] [--database sqlite,postgres,replicas]
                                     [--wait 5] [--rounds 3] [--idle 10] [--server-src PATH]

For each database and each N: a real server process (two on one PostgreSQL database for
``replicas``); N agents, each registered with a label of its own, long-poll it with
``wait`` seconds in a loop, from one client process (asyncio + httpx, their first claims
spread over one wait). Rounds alternate a baseline phase (no agents polling) and a phase
with the N agents, on the same server, so the machine's drift falls on both; figures are
medians over the rounds, and the ratios are each round's phase with agents over its
baseline.

- ``create_ms``: run creation (``Client.create_flow_run``, runs no agent fits) p50 / p99.
  Target p99 ≤ 2 × the baseline's.
- ``handoff_ms``: a dedicated agent long-polls; a run with its label is created; milliseconds
  from the create call's start to the claim's answer. Target median ≤ 50 ms. With
  ``replicas``, the agent waits on the first server and the run is created through the
  second (the other agents are split between both).
- ``idle_cpu_percent``: the server process's CPU (utime + stime from /proc) over ``idle``
  seconds in which nothing but the polling happens, in % of one core. Target ≤ 5 %.
  ``client_cpu_percent`` is the polling process's, for scale (it shares the 2 cores).

``--server-src PATH`` runs the server from another source tree (e.g. a ``git worktree`` of
the commit before a change), to measure the before and after with the same script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from headwater import Flow, task
from headwater.client import Client
from headwater.server.process import ServerProcess
from headwater.storage import Local

#: Claimed runs get no heartbeats here: recovery must not hand them out again mid-measurement.
QUIET_RECOVERY = {"HEADWATER__SERVER__HEARTBEAT_TIMEOUT": "3600"}
TICKS = os.sysconf("SC_CLK_TCK")


@task
def step(x: int = 0) -> int:
    return x + 1


# -- the polling agents (a child process: ``--poll``) --------------------------------------


async def poll(urls: list[str], count: int, wait: float, prefix: str) -> None:
    """Register ``count`` agents (spread over ``urls``), print "ready", long-poll until stdin closes."""
    import httpx

    limits = httpx.Limits(max_connections=count + 50, max_keepalive_connections=count + 50)
    async with httpx.AsyncClient(timeout=wait + 60, limits=limits) as http:
        gate = asyncio.Semaphore(50)

        async def register(i: int) -> tuple[str, str, str]:
            url = urls[i % len(urls)]
            label = f"{prefix}-{i}"
            for attempt in range(5):  # a keep-alive connection the loaded server just closed: again
                try:
                    async with gate:
                        answer = await http.post(f"{url}/agents", json={"name": label, "kind": "bench",
                                                                        "labels": [label]})  # fmt: skip
                    answer.raise_for_status()
                    return url, answer.json()["id"], label
                except httpx.TransportError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            raise AssertionError("unreachable")

        agents = await asyncio.gather(*(register(i) for i in range(count)))
        errors = claims = 0
        first = asyncio.Event()
        pending = count

        async def agent(url: str, agent_id: str, label: str) -> None:
            nonlocal errors, claims, pending
            await asyncio.sleep(random.uniform(0, wait))  # agents start at different moments
            body = json.dumps({"agent_id": agent_id, "labels": [label], "wait": wait, "limit": 1}).encode()
            stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
            while True:
                started = time.monotonic()
                try:
                    stream = stream or await _connect(url)
                    await _claim(stream, url, body)
                    claims += 1
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    errors += 1
                    if stream is not None:
                        stream[1].close()
                    stream = None
                    await asyncio.sleep(1)
                if pending:
                    pending -= 1
                    if not pending:
                        first.set()
                if time.monotonic() - started < 1.0:  # the agents' poll_interval
                    await asyncio.sleep(1.0 - (time.monotonic() - started))

        tasks = [asyncio.create_task(agent(*a)) for a in agents]
        await first.wait()  # every agent has finished its first claim (the start-up wave is over)
        print("ready", flush=True)
        since, counted = time.monotonic(), claims
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        rate = (claims - counted) / (time.monotonic() - since)
        for one in tasks:
            one.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats = {"errors": errors, "claims_per_s": round(rate, 1)}
        print(json.dumps(stats), flush=True)
        print(f"pollers: {count} agents, {json.dumps(stats)}", file=sys.stderr, flush=True)


# The claims are plain HTTP/1.1 on one kept-alive connection per agent, written by hand: httpx's
# pool costs milliseconds per request with a thousand connections, and on this 2-core machine the
# client would then, not the server, set the pace of the polling.


async def _connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    return await asyncio.open_connection(host, int(port))


async def _claim(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], url: str, body: bytes) -> None:
    reader, writer = stream
    path = "/" + url.split("//", 1)[1].split("/", 1)[1] + "/work/claim"
    writer.write(b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(body), body))  # fmt: skip
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))  # fmt: skip
    await reader.readexactly(length)
    if status != 200:
        raise ValueError(f"claim answered {status}")


class Pollers:
    """The ``--poll`` child process, started with :meth:`start`, stopped with :meth:`stop`."""

    def __init__(self, urls: list[str], count: int, wait: float, prefix: str) -> None:
        self.command = [sys.executable, __file__, "--poll", ",".join(u + "/api/v1" for u in urls),
                        "--count", str(count), "--wait", str(wait), "--prefix", prefix]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Pollers:
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the polling agents did not start: {line!r}")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        out = self.process.stdout.read()
        self.process.wait(timeout=60)
        with contextlib.suppress(ValueError, IndexError):
            return dict(json.loads(out.strip().splitlines()[-1]))
        return {}


# -- measurements -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of the line)


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU over ``seconds`` of wall time, in % of one core."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    return {name: 100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}


def create_latencies(url: str, flow_id: str, samples: int) -> list[float]:
    with Client(url) as client:
        client.health()
        out = []
        for _ in range(samples):
            start = time.perf_counter()
            client.create_flow_run(flow_id, labels=["nobody"])
            out.append((time.perf_counter() - start) * 1000)
        return out


def handoffs(wait_url: str, create_url: str, flow_id: str, samples: int, label: str) -> list[float]:
    """Milliseconds from a run's create call to the answer of the claim waiting for it."""
    creator, waiter = Client(create_url), Client(wait_url)
    agent_id = waiter.register_agent(label, "bench", [label])
    out = []
    for _ in range(samples):
        answered: dict[str, Any] = {}

        def wait_for_run(answered: dict[str, Any] = answered) -> None:
            runs = waiter.claim_flow_runs(agent_id, [label], limit=1, wait=10)
            answered.update(at=time.perf_counter(), n=len(runs))

        thread = threading.Thread(target=wait_for_run)
        thread.start()
        time.sleep(0.3)  # the claim reaches the server and waits
        started = time.perf_counter()
        creator.create_flow_run(flow_id, labels=[label])
        thread.join()
        if answered.get("n") != 1:
            raise RuntimeError(f"the waiting claim got {answered.get('n')} runs, not 1")
        out.append((answered["at"] - started) * 1000)
    creator.close()
    waiter.close()
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def phase(servers: list[ServerProcess], flow_id: str, args: argparse.Namespace, label: str,
          pollers: Pollers | None) -> dict[str, Any]:  # fmt: skip
    """One phase of a round: idle CPU, then creation latencies, then hand-offs."""
    pids = {f"server{i + 1}": s.process.pid for i, s in enumerate(servers) if s.process is not None}
    if pollers is not None:
        pids["client"] = pollers.pid
    cpu = idle_cpu(pids, args.idle)
    try:
        created = create_latencies(servers[-1].url, flow_id, args.creates)
        handed = handoffs(servers[0].url, servers[-1].url, flow_id, args.handoffs, label)
    except Exception as exc:  # e.g. a create call the server did not answer within the client's timeout
        return {"idle_cpu_percent": {k: round(v, 2) for k, v in cpu.items()}, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "idle_cpu_percent": {k: round(v, 2) for k, v in cpu.items()},
        "create_ms": {"p50": round(statistics.median(created), 2), "p99": round(percentile(created, 0.99), 2)},
        "handoff_ms": {"median": round(statistics.median(handed), 2), "p99": round(percentile(handed, 0.99), 2)},
    }


def measure(kind: str, counts: list[int], folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = None
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'bench.db'}"
    else:
        from pg import PostgresCluster  # the tests' throwaway cluster

        cluster = PostgresCluster()
        cluster.start()
        url = cluster.create_database("bench")
    env = dict(QUIET_RECOVERY)
    if args.server_src:
        env["PYTHONPATH"] = str(Path(args.server_src).resolve() / "src")
    servers = [ServerProcess(folder / "one", url, env=env).start()]
    if kind == "replicas":
        servers.append(ServerProcess(folder / "two", url, env=env).start())
    results: dict[str, Any] = {}
    try:
        with Client(servers[0].url) as client:
            client.create_project("bench")
            with Flow("idle-agents") as flow:
                step(step(1))
            flow.storage = Local(directory=str(folder / "flows"))
            flow_id = client.register(flow, "bench")
        for count in counts:
            rounds: list[dict[str, Any]] = []
            for n in range(args.rounds):
                base = phase(servers, flow_id, args, f"handoff-{count}-{n}-a", None)
                pollers = Pollers([s.url for s in servers], count, args.wait, f"idle{count}").start()
                try:
                    time.sleep(args.wait)  # past the start-up wave: the agents' claims are idle re-polls
                    loaded = phase(servers, flow_id, args, f"handoff-{count}-{n}-b", pollers)
                finally:
                    stats = pollers.stop()
                rounds.append({"baseline": base, "agents": loaded, "claim_errors": stats.get("errors"),
                               "claims_per_s": stats.get("claims_per_s")})  # fmt: skip
                print(f"{kind} N={count} round {n + 1}: {json.dumps(rounds[-1])}", file=sys.stderr, flush=True)
            results[str(count)] = summary(rounds)
    finally:
        for server in servers:
            server.stop()
        if cluster is not None:
            cluster.stop()
    return results


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in rounds if "error" in r["baseline"] or "error" in r["agents"]]
    if failed:
        return {"failed_rounds": failed, "rounds": len(rounds)}
    def med(side: str, *path: str) -> float:
        values = []
        for r in rounds:
            value: Any = r[side]
            for key in path:
                value = value[key]
            values.append(value)
        return round(statistics.median(values), 2)

    p99_ratio = [r["agents"]["create_ms"]["p99"] / r["baseline"]["create_ms"]["p99"] for r in rounds]
    cpu = med("agents", "idle_cpu_percent", "server1")
    replicas = "server2" in rounds[0]["agents"]["idle_cpu_percent"]
    out = {
        "baseline_no_agents": {
            "create_p50_ms": med("baseline", "create_ms", "p50"),
            "create_p99_ms": med("baseline", "create_ms", "p99"),
            "handoff_median_ms": med("baseline", "handoff_ms", "median"),
            "idle_server_cpu_percent": med("baseline", "idle_cpu_percent", "server1"),
        },
        "with_agents": {
            "create_p50_ms": med("agents", "create_ms", "p50"),
            "create_p99_ms": med("agents", "create_ms", "p99"),
            "handoff_median_ms": med("agents", "handoff_ms", "median"),
            "handoff_p99_ms": med("agents", "handoff_ms", "p99"),
            "idle_server_cpu_percent": cpu,
            "client_cpu_percent": med("agents", "idle_cpu_percent", "client"),
        },
        "create_p99_ratio_per_round": [round(r, 2) for r in p99_ratio],
        "create_p99_ratio": round(statistics.median(p99_ratio), 2),
        "claim_errors": [r["claim_errors"] for r in rounds],
        "claims_per_s": [r.get("claims_per_s") for r in rounds],
        "rounds": len(rounds),
    }
    if replicas:
        out["with_agents"]["idle_server2_cpu_percent"] = med("agents", "idle_cpu_percent", "server2")
    out["met"] = {
        "create_p99_le_2x_baseline": out["create_p99_ratio"] <= 2,
        "handoff_median_le_50ms": out["with_agents"]["handoff_median_ms"] <= 50,
        "idle_cpu_le_5_percent": cpu <= 5 and (not replicas or out["with_agents"]["idle_server2_cpu_percent"] <= 5),
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="60,1000", help="comma-separated agent counts (default 60,1000)")
    parser.add_argument("--database", default="sqlite,postgres,replicas", help="sqlite, postgres, replicas")
    parser.add_argument("--wait", type=float, default=5.0, help="each claim's long-poll, seconds (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/agents rounds (default 3)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle CPU window (default 10)")
    parser.add_argument("--creates", type=int, default=150, help="runs created per phase (default 150)")
    parser.add_argument("--handoffs", type=int, default=20, help="hand-offs per phase (default 20)")
    parser.add_argument("--server-src", help="run the server from this source tree (its src/ first on the path)")
    parser.add_argument("--poll", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poll:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us by closing stdin
        asyncio.run(poll(args.poll.split(","), args.count, args.wait, args.prefix))
        return 0
    counts = [int(n) for n in args.agents.split(",")]
    results: dict[str, Any] = {"agents": counts, "wait": args.wait, "server_src": args.server_src}
    for kind in args.database.split(","):
        with tempfile.TemporaryDirectory(prefix=f"hw-agents-{kind}-") as folder, contextlib.redirect_stdout(sys.stderr):
            results[kind] = measure(kind, counts, Path(folder), args)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
