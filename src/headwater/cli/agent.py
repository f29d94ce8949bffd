"""``headwater agent KIND start``: an agent of any registered kind in the foreground until SIGINT/SIGTERM.

One subcommand per kind of ``headwater.agent.registry``; each takes the options
every agent has (below) and the kind's own (``Agent.add_cli_arguments``), whose
names are the agent's constructor arguments. The agent classes (and the client
they import) load only when the command line is an ``agent`` command. The API
URL and token come from the settings (``HEADWATER__API__URL``,
``HEADWATER__API__TOKEN``); claim wait, heartbeat, workers and stop timeout from
the ``agent`` settings (``HEADWATER__AGENT__*``). The agents are ``headwater/agent/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from headwater.cli.common import fail

#: the options every agent takes: argument dest → the constructor argument it fills.
COMMON = {
    "label": "labels",
    "name": "name",
    "env": "env_vars",
    "max_polls": "max_polls",
    "agent_address": "agent_address",
    "no_cloud_logs": "no_cloud_logs",
}
#: what argparse puts in the namespace beside the options.
_PLUMBING = {"command", "agent_kind", "agent_command", "handler"}
# The kind-specific subcommands (`headwater agent kubernetes install`) come from the class's add_cli_commands.


def _env_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"environment variable {text!r} must look like NAME=VALUE")
    return name, value


def _add_common(start: argparse.ArgumentParser) -> None:
    """The options every kind of agent takes."""
    start.add_argument("--label", "-l", action="append", default=[], metavar="LABEL",
                       help="a label of the agent (repeatable): it runs flow runs whose labels it all has")  # fmt: skip
    start.add_argument("--name", "-n", help="the agent's name (default: <kind>-<hostname>)")
    start.add_argument("--env", "-e", action="append", default=[], type=_env_var, metavar="NAME=VALUE",
                       help="an environment variable for every flow run (repeatable)")  # fmt: skip
    start.add_argument("--max-polls", type=int, metavar="N", help="stop after N claim calls (default: never)")
    start.add_argument("--agent-address", metavar="URL",
                       help="serve GET /api/health and POST /api/poke here, e.g. http://127.0.0.1:8080")  # fmt: skip
    start.add_argument("--no-cloud-logs", action="store_true",
                       help="don't send the agent's own logs to the API")  # fmt: skip


def add_parser(commands: Any, argv: Sequence[str] | None = None) -> None:
    """The ``agent`` command, one subcommand per registered kind.

    A kind's own options are added only when ``argv`` is an ``agent`` command, so
    other commands don't import the agents (and the client they use).
    """
    agent = commands.add_parser("agent", help="run an agent: it takes flow runs from the server and starts them")
    wanted = list(argv or [])[:2]
    if wanted[:1] != ["agent"]:
        return  # the registry imports the agent package (and the client): ~1 s that other commands don't need
    from headwater.agent.registry import registry
    from headwater.plugins import PluginError

    kinds = agent.add_subparsers(dest="agent_kind", required=True, metavar="KIND")
    known = registry.known_kinds()
    for kind in known:
        # `agent KIND ...` loads that kind; `agent` or `agent --help` loads all (to describe them)
        load = wanted[:1] == ["agent"] and (wanted[1:] == [kind] or not set(wanted[1:]) & set(known))
        cls, problem = None, None
        if load:
            try:
                cls = registry.get_class(kind)
            except PluginError as exc:
                problem = str(exc)
        about = (cls.__doc__ or "").strip().splitlines()[0] if cls is not None and cls.__doc__ else f"a {kind} agent"
        kind_parser = kinds.add_parser(kind, help=about.rstrip("."))
        sub = kind_parser.add_subparsers(dest="agent_command", required=True)
        start = sub.add_parser("start", help=f"start a {kind} agent in the foreground (stop it with Ctrl-C or SIGTERM)")
        _add_common(start)
        if cls is not None:
            cls.add_cli_arguments(start.add_argument_group(f"{kind} agent"))
            cls.add_cli_commands(sub)
        start.set_defaults(handler=_start if problem is None else _unavailable(problem))


def _unavailable(problem: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        return fail(problem)

    return handler


def _start(args: argparse.Namespace) -> int:
    from headwater.agent.registry import get_agent_class
    from headwater.client.errors import ApiError
    from headwater.engine.logs import configure_logging

    configure_logging()
    values = vars(args)
    kwargs = {argument: values[dest] for dest, argument in COMMON.items()}
    kwargs["env_vars"] = dict(kwargs["env_vars"])
    kwargs.update({dest: value for dest, value in values.items() if dest not in COMMON and dest not in _PLUMBING})
    try:
        agent = get_agent_class(args.agent_kind)(**kwargs)
        agent.start()
    except (ApiError, ValueError, ImportError) as exc:
        return fail(str(exc))
    return 0
