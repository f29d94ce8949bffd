"""Before and after in one run: a benchmark of this tree against the same benchmark of another.

    .venv/bin/python bench/compare.py /path/to/other/checkout [--rounds 3] [--bench engine.py] [-- ARGS...]

``/path/to/other/checkout`` is a checkout of another commit (``git worktree add --detach
../base <commit>``); its own ``bench/<bench>`` runs with its own ``src`` first on
``PYTHONPATH``, in this interpreter. The two alternate, ``--rounds`` times each (which
goes first alternates too), so both see the same machine. Prints one JSON document: every
numeric figure of the benchmark's output, as the median over rounds for ``before`` (the
other checkout) and ``after`` (this tree), and ``after / before``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def run(tree: Path, bench: str, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run(
        [sys.executable, str(tree / "bench" / bench), *args], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def figures(document: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number in a nested JSON document, by dotted path (booleans left out)."""
    found: dict[str, float] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(figures(value, f"{path}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[path] = float(value)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="a checkout of the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bench", default="engine.py", help="the benchmark script in bench/")
    options, extra = parser.parse_known_args()
    options.args = [a for a in extra if a != "--"]  # the benchmark's own arguments
    before: list[dict[str, float]] = []
    after: list[dict[str, float]] = []
    for round_ in range(options.rounds):
        # alternate which goes first, so neither always runs on a machine the other just warmed (or tired)
        order = [("before", options.other.resolve()), ("after", HERE)]
        for side, tree in order if round_ % 2 == 0 else reversed(order):
            (before if side == "before" else after).append(figures(run(tree, options.bench, options.args)))
    report: dict[str, Any] = {"bench": options.bench, "rounds": options.rounds, "figures": {}}
    for name in sorted(set(before[0]) & set(after[0])):
        old = statistics.median(r[name] for r in before)
        new = statistics.median(r[name] for r in after)
        ratio = round(new / old, 3) if old else None
        report["figures"][name] = {"before": old, "after": new, "after_over_before": ratio}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
