"""How storages name what they write: a flow's slug, a timestamped name, the payload suffix.

Shared by every backend that writes files or objects (``local.py``, ``objects.py`` for
S3, GCS and Azure, ``docker.py``), so none imports naming from another backend.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

#: the suffix of a pickled flow's file or object (a versioned payload, ``payload.py``).
SUFFIX = ".headwater"


def slugify(name: str) -> str:
    """A file-name-safe form of a flow name: ``"My ETL/v2"`` → ``"my-etl-v2"``."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "flow"


def stamp() -> str:
    """A new flow file's or object's name, ``<UTC time>-<8 hex>`` (``20240131T120000123456Z-1a2b3c4d``).

    Names sort by when they were written, and the random part keeps two writers apart.
    Local, S3, GCS and Azure storage all name what they write this way.
    """
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
