"""Helpers shared by the CLI's command modules."""

from __future__ import annotations

import sys


def fail(message: str, code: int = 2) -> int:
    """Print ``headwater: error: message`` to stderr and return the exit code."""
    print(f"headwater: error: {message}", file=sys.stderr)
    return code
