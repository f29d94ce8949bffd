"""Tests use the package's server launcher under its old name."""

from headwater.server.process import ServerProcess as LiveServer
from headwater.server.process import free_port

__all__ = ["LiveServer", "free_port"]
