"""``headwater get projects|flows|flow-runs|agents|secrets``: what the API server holds, as text tables."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, labels, make_client, table, when
from headwater.cli.runs import add_run_filters, print_more, runs_page


def add_parser(commands: Any) -> None:
    get = commands.add_parser("get", help="list projects, flows, flow runs, agents or secrets")
    sub = get.add_subparsers(dest="get_command", required=True)
    sub.add_parser("projects", help="list projects").set_defaults(handler=_projects)
    flows = sub.add_parser("flows", help="list registered flow versions")
    flows.add_argument("--project", help="only this project's flows")
    flows.add_argument("--name", help="only flows of this name")
    flows.add_argument("--all", action="store_true", help="include archived versions")
    flows.set_defaults(handler=_flows)
    runs = sub.add_parser("flow-runs", help="list flow runs, newest first (also `headwater runs ls`)")
    add_run_filters(runs)
    runs.set_defaults(handler=_flow_runs)
    sub.add_parser("agents", help="list agents, most recently seen first").set_defaults(handler=_agents)
    sub.add_parser("secrets", help="list the API's secrets (names only)").set_defaults(handler=_secrets)


@api_command
def _projects(args: argparse.Namespace) -> int:
    with make_client() as client:
        projects = client.list_projects()
    rows = [[p.name, p.flow_count, when(p.created), p.id] for p in projects]
    empty = "no projects; create one with `headwater create project NAME`"
    print(table(["name", "flows", "created", "id"], rows, empty=empty))
    return 0


@api_command
def _flows(args: argparse.Namespace) -> int:
    with make_client() as client:
        flows = client.list_flows(project_name=args.project, name=args.name, include_archived=args.all)
    rows = [
        [f.name, f.version, f.project_name, labels(f.labels), when(f.created), f.id]
        + (["yes" if f.archived else "no"] if args.all else [])
        for f in flows
    ]
    headers = ["name", "version", "project", "labels", "created", "id"] + (["archived"] if args.all else [])
    print(table(headers, rows, empty="no flows registered; see `headwater register --help`"))
    return 0


@api_command
def _flow_runs(args: argparse.Namespace) -> int:
    with make_client() as client:
        page = runs_page(client, args)
    rows = [
        [r.run_name, r.flow_name, r.project_name, r.state, labels(r.labels), when(r.created), r.id]
        for r in page.flow_runs
    ]
    print(table(["name", "flow", "project", "state", "labels", "created", "id"], rows, empty="no flow runs"))
    print_more(page)
    return 0


@api_command
def _agents(args: argparse.Namespace) -> int:
    with make_client() as client:
        agents = client.list_agents()
    rows = [[a.name, a.kind, labels(a.labels), when(a.last_seen), a.id] for a in agents]
    print(table(["name", "kind", "labels", "last seen", "id"], rows, empty="no agents"))
    return 0


@api_command
def _secrets(args: argparse.Namespace) -> int:
    with make_client() as client:
        secrets = client.list_secrets()
    rows = [[s.name, when(s.created), when(s.updated)] for s in secrets]
    print(table(["name", "created", "updated"], rows, empty="no secrets; set one with `headwater create secret NAME`"))
    return 0
