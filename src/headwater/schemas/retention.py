"""Retention on the wire: ``POST /runs/prune``. Server side: ``server/api/retention.py``."""

from __future__ import annotations

from pydantic import Field

from headwater.schemas.common import Model, Timestamp

#: Most runs one ``POST /runs/prune`` deletes; the client asks again for the rest.
MAX_PRUNE_RUNS = 100_000
#: The longest window, in seconds (about 100 years): past it a date is out of range.
MAX_WINDOW = 100 * 365 * 86400.0


class PruneRequest(Model):
    """Delete finished runs that finished longer ago than ``older_than`` seconds."""

    older_than: float = Field(
        gt=0,
        le=MAX_WINDOW,
        description="Seconds: runs that finished (Success, Failed, Cancelled) longer ago than this are deleted, "
        "with their task runs, logs, labels and state history.",
    )
    dry_run: bool = Field(False, description="Count what would be deleted; delete nothing.")
    max_runs: int = Field(
        10_000,
        ge=1,
        le=MAX_PRUNE_RUNS,
        description="Most runs this request deletes (in batches of server.prune_batch_size); `remaining` says "
        "how many are left for the next request.",
    )


class PruneResult(Model):
    """What a prune deleted (or, dry, would delete)."""

    cutoff: Timestamp = Field(description="Runs that finished before this moment (UTC) are pruned.")
    dry_run: bool
    runs: int = Field(description="Runs deleted (dry: that would be, up to max_runs).")
    task_runs: int
    logs: int
    states: int = Field(description="Rows of the runs' state history.")
    batches: int = Field(description="Transactions the deletion took (0 when dry).")
    remaining: int = Field(description="Finished runs past the window still stored (beyond max_runs).")
