"""``python -m headwater.cli`` runs the command line."""

import sys

from headwater.cli.main import main

sys.exit(main())
