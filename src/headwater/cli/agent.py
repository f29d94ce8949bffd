"""``headwater agent local start``, ``headwater agent docker start``: an agent in the foreground until SIGINT/SIGTERM.

The API URL and token come from the settings (``HEADWATER__API__URL``,
``HEADWATER__API__TOKEN``); claim wait, heartbeat, workers and stop timeout from
the ``agent`` settings (``HEADWATER__AGENT__*``). The agents are ``headwater/agent/``.
"""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.common import fail


def _env_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"environment variable {text!r} must look like NAME=VALUE")
    return name, value


def _add_common(start: argparse.ArgumentParser) -> None:
    """The options every kind of agent takes."""
    start.add_argument(
        "--label",
        "-l",
        action="append",
        default=[],
        metavar="LABEL",
        help="a label of the agent (repeatable): it runs flow runs whose labels it all has",
    )
    start.add_argument("--name", "-n", help="the agent's name (default: <kind>-<hostname>)")
    start.add_argument(
        "--env",
        "-e",
        action="append",
        default=[],
        type=_env_var,
        metavar="NAME=VALUE",
        help="an environment variable for every flow run (repeatable)",
    )
    start.add_argument("--max-polls", type=int, metavar="N", help="stop after N claim calls (default: never)")
    start.add_argument(
        "--agent-address",
        metavar="URL",
        help="serve GET /api/health and POST /api/poke here, e.g. http://127.0.0.1:8080",
    )
    start.add_argument("--no-cloud-logs", action="store_true",
                       help="don't send the agent's own logs to the API")  # fmt: skip


def add_parser(commands: Any) -> None:
    agent = commands.add_parser("agent", help="run an agent: it takes flow runs from the server and starts them")
    kinds = agent.add_subparsers(dest="agent_kind", required=True, metavar="KIND")
    local = kinds.add_parser("local", help="an agent that runs each flow run as a process on this machine")
    sub = local.add_subparsers(dest="agent_command", required=True)
    start = sub.add_parser("start", help="start a local agent in the foreground (stop it with Ctrl-C or SIGTERM)")
    _add_common(start)
    start.add_argument(
        "--no-hostname-label", action="store_true", help="don't add this machine's hostname to the labels"
    )
    start.add_argument(
        "--import-path",
        "-p",
        action="append",
        default=[],
        metavar="PATH",
        help="a folder put first on the flow runs' PYTHONPATH (repeatable)",
    )
    start.add_argument("--show-flow-logs", action="store_true",
                       help="show the flow-run processes' output here (default: discarded)")  # fmt: skip
    start.set_defaults(handler=_start_local)
    _add_docker(kinds)


def _add_docker(kinds: Any) -> None:
    docker = kinds.add_parser("docker", help="an agent that runs each flow run in a Docker container of its image")
    sub = docker.add_subparsers(dest="agent_command", required=True)
    start = sub.add_parser("start", help="start a Docker agent in the foreground (stop it with Ctrl-C or SIGTERM)")
    _add_common(start)
    start.add_argument("--base-url", metavar="URL",
                       help="the Docker daemon, e.g. unix:///var/run/docker.sock (default: the docker.base_url "
                            "setting, then DOCKER_HOST)")  # fmt: skip
    start.add_argument("--no-pull", action="store_true", help="run only images the daemon has; never pull")
    start.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro|rw]",
        help="mount this in every flow-run container (repeatable)",
    )
    start.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="NETWORK",
        help="attach the containers to this Docker network (repeatable; default: the docker.network_mode setting)",
    )
    start.add_argument("--show-flow-logs", action="store_true",
                       help="stream the containers' output here, each line prefixed with its run id")  # fmt: skip
    start.add_argument(
        "--reg-allow",
        action="append",
        default=[],
        metavar="REGISTRY",
        help="only run images from this registry, e.g. localhost:5000 (repeatable; default: any)",
    )
    start.set_defaults(handler=_start_docker)


def _start_local(args: argparse.Namespace) -> int:
    from headwater.agent.local import LocalAgent
    from headwater.client.errors import ApiError
    from headwater.utilities.logging import configure_logging

    configure_logging()
    agent = LocalAgent(
        name=args.name,
        labels=args.label,
        env_vars=dict(args.env),
        max_polls=args.max_polls,
        agent_address=args.agent_address,
        no_cloud_logs=args.no_cloud_logs,
        import_paths=args.import_path,
        show_flow_logs=args.show_flow_logs,
        hostname_label=not args.no_hostname_label,
    )
    try:
        agent.start()
    except ApiError as exc:
        return fail(str(exc))
    return 0


def _start_docker(args: argparse.Namespace) -> int:
    from headwater.agent.docker import DockerAgent
    from headwater.client.errors import ApiError
    from headwater.utilities.logging import configure_logging

    configure_logging()
    try:
        agent = DockerAgent(
            name=args.name,
            labels=args.label,
            env_vars=dict(args.env),
            max_polls=args.max_polls,
            agent_address=args.agent_address,
            no_cloud_logs=args.no_cloud_logs,
            base_url=args.base_url,
            no_pull=args.no_pull,
            volumes=args.volume,
            networks=args.network,
            show_flow_logs=args.show_flow_logs,
            reg_allow_list=args.reg_allow or None,
        )
        agent.start()
    except (ApiError, ValueError) as exc:
        return fail(str(exc))
    return 0
