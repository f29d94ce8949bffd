"""The example ETL flow (defined in ``headwater.examples.etl``), for ``headwater register`` and ``flow.run``.

    headwater register --project demo examples/etl.py --label dev
    python examples/etl.py          # run it here and now, with a progress display
"""

import sys

from headwater.examples.etl import flow, main

__all__ = ["flow"]

if __name__ == "__main__":
    sys.exit(main())
