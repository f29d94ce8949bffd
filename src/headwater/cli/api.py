"""What the CLI's API commands share: the client, error reporting, tables and times.

Commands: ``create.py``, ``register.py``, ``get.py``, ``logs.py``, ``explain.py``
and the API form of ``run`` (``runs.py``). Each makes its ``Client()`` from the
settings (``HEADWATER__API__URL``, ``HEADWATER__API__TOKEN``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from headwater.cli.common import fail

if TYPE_CHECKING:
    from headwater.client import Client

Handler = Callable[[argparse.Namespace], int]


def make_client() -> Client:
    """A client of the server the settings name."""
    from headwater.client import Client

    return Client()


def api_command(handler: Handler) -> Handler:
    """Report API errors as ``headwater: error: ...``: exit 2 for a refused request, 1 when unreachable.

    Ctrl-C (e.g. while following a run) exits 130 without a traceback.
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from headwater.client import ApiError, ClientError

        try:
            return handler(args)
        except ClientError as exc:
            return fail(str(exc), 2)
        except ApiError as exc:
            return fail(str(exc), 1)
        except KeyboardInterrupt:
            return 130

    return run


def add_label_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--label", "-l", action="append", default=None, metavar="LABEL", help=help)


def when(value: datetime.datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def labels(values: Iterable[str]) -> str:
    """Labels as ``dev,gpu`` (``-`` for none)."""
    return ",".join(values) or "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "nothing found") -> str:
    """Rows as aligned text columns under upper-case headers; ``empty`` when there are none."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        return empty
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
