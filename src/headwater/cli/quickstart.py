"""``headwater quickstart``: server + agent + the example flow, end to end, then everything stops."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    quick = commands.add_parser("quickstart", help="run the example flow through a server and an agent")
    quick.add_argument(
        "--keep",
        action="store_true",
        help="keep the server and agent up until Ctrl-C (to look at the run in the web UI), and the temporary home",
    )
    quick.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the run")
    quick.set_defaults(handler=_quickstart)


def _quickstart(args: argparse.Namespace) -> int:
    from headwater.quickstart import run_quickstart

    return run_quickstart(keep=args.keep, timeout=args.timeout)
