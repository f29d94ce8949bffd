"""Errors of ``headwater.storage``.

Every storage failure is a :class:`StorageError` whose message names the thing
(the flow, the file, the kind) and the fix. It is a ``ValueError`` so the CLI
and callers that already handle bad input (``except ValueError``) report it.
"""

from __future__ import annotations

from headwater.plugins import PluginNotAvailable


class StorageError(ValueError):
    """A storage can't do what was asked: a missing or duplicate flow, a bad file or spec.

    Example:
        ``StorageError: flow 'etl' is not in Local storage /x/flows (known: 'etl-v1');
        add it with storage.add_flow(flow) (flow.register() does this)``
    """


class StorageNotAvailable(StorageError, PluginNotAvailable):
    """A storage kind that can't be loaded here: its extra isn't installed, or this
    release doesn't have it yet.

    It is also an ``ImportError`` (and the ``PluginNotAvailable`` of every plugin family),
    so ``from headwater.storage import S3`` inside ``try: ... except ImportError:`` behaves
    like any optional import.
    """
