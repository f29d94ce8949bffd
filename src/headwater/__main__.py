"""``python -m headwater`` runs the command line (as does ``python -m headwater.cli``)."""

import sys

from headwater.cli.main import main

sys.exit(main())
