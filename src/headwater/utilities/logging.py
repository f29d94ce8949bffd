"""Where ``configure_logging`` was first documented; the ``headwater`` logger's setup is ``headwater.engine.logs``.

Kept so ``from headwater.utilities.logging import configure_logging`` (docs/running.md) goes on working.
"""

from headwater.engine.logs import RunContextFilter, configure_logging, ensure_logging, log_format, logging_configured

__all__ = ["RunContextFilter", "configure_logging", "ensure_logging", "log_format", "logging_configured"]
