"""The ``headwater`` command line. One module per command group."""

from headwater.cli.main import main

__all__ = ["main"]
