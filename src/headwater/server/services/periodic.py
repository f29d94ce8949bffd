"""A server job run every so many seconds in a daemon thread (recovery, retention)."""

from __future__ import annotations

import logging
import threading


class PeriodicService:
    """Calls :meth:`run_once` every :meth:`interval` seconds until stopped; a failed round is logged, the next runs.

    Subclasses set ``name`` (the thread's), ``what`` (the job, for the log) and ``logger``.
    """

    name = "headwater-periodic"
    what = "periodic job"
    logger = logging.getLogger("headwater.server")

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def interval(self) -> float:
        """Seconds between two rounds."""
        raise NotImplementedError

    def run_once(self) -> object:
        """One round."""
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval()):
            try:
                self.run_once()
            except Exception:  # keep going; the next round may succeed
                self.logger.exception("%s failed", self.what)
