"""Settings: one typed tree, from defaults, then ``config.toml``, then the environment.

Sources, later ones winning:

1. the defaults below;
2. ``$HEADWATER__HOME/config.toml`` (home defaults to ``~/.headwater``), e.g.::

       [logging]
       level = "DEBUG"

3. environment variables ``HEADWATER__SECTION__KEY``, e.g. ``HEADWATER__LOGGING__LEVEL``
   or ``HEADWATER__ENGINE__EXECUTOR__DEFAULT_CLASS``.

Settings are built at the edges (``get_settings()`` in ``flow.run``, the CLI,
the agent) and passed down; nothing reads them at import time.
"""

from headwater.config.settings import (
    ConfigError,
    Settings,
    get_settings,
    reload_settings,
)

__all__ = ["ConfigError", "Settings", "get_settings", "reload_settings"]
