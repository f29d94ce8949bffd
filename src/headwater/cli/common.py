"""Helpers shared by the CLI's command modules: the error line and the argument parser."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import NoReturn


def fail(message: str, code: int = 2) -> int:
    """Print ``headwater: error: message`` to stderr and return the exit code."""
    print(f"headwater: error: {message}", file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose leaf commands refuse what they don't know themselves.

    Plain argparse hands an unknown option of ``headwater run`` up to the top-level
    parser, which prints the top-level usage. Here the command that got it prints
    its own usage and the closest option it has (``did you mean --label?``).
    Subparsers are made with the parent's class, so every command is a ``Parser``.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:
            self.unrecognized(extras)
        return parsed, extras

    def unrecognized(self, extras: list[str]) -> NoReturn:
        """Exit with this command's usage, the arguments it does not take and the nearest option."""
        message = f"unrecognized arguments: {' '.join(extras)}"
        options = [o for o in self._option_string_actions if o.startswith("--")]
        for extra in extras:
            if extra.startswith("-"):
                close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
                if close:
                    message += f" (did you mean {close[0]}?)"
                    break
        self.error(message)
