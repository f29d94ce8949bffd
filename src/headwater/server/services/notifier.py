"""Wakes waiting claim calls as soon as work may be due (a run created, put back, rescheduled).

A generation counter avoids lost wake-ups: a claimer reads the generation,
looks for work, and waits only if the generation has not moved since.
"""

from __future__ import annotations

import threading


class WorkNotifier:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        """Something claimable may have appeared: wake every waiting claimer."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification after generation ``seen``."""
        with self._condition:
            return self._condition.wait_for(lambda: self._generation != seen, timeout=max(timeout, 0.0))
