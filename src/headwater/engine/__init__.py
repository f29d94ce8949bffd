"""The engine: runs a flow with an executor and reports states to handlers."""

from headwater.engine.flow_runner import run_flow
from headwater.engine.handlers import StateHandler

__all__ = ["StateHandler", "run_flow"]
