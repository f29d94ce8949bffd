"""Durations written as people write them: ``3600`` (seconds), ``90m``, ``12h``, ``30d``.

Used by the CLI (``--older-than``, ``--expires-in``) and the settings (``server.prune_older_than``).
"""

from __future__ import annotations

import math

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: What a duration looks like, for messages.
FORMS = "seconds, or a number with a unit: 90m, 12h, 30d (s, m, h, d)"


def parse_duration(text: str | float) -> float:
    """Seconds, more than 0, from ``3600``, ``45s``, ``90m``, ``12h``, ``30d`` (or a number).

    Raises:
        ValueError: naming the text and the forms a duration takes.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        number, unit = (value[:-1], value[-1]) if value and value[-1] in UNITS else (value, "s")
        try:
            seconds = float(number) * UNITS[unit]
        except ValueError:
            raise ValueError(f"{text!r} is not a duration: give {FORMS}") from None
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"a duration must be more than 0 (and finite), not {text!r}: give {FORMS}")
    return seconds


def format_duration(seconds: float) -> str:
    """``30d``, ``12h``, ``90m`` or ``45s``: the largest unit that divides it, else seconds."""
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
