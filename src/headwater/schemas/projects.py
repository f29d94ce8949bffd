"""Projects on the wire. Server side: ``server/api/projects.py``; client: ``client/client.py``."""

from __future__ import annotations

import datetime

from headwater.schemas.common import Model, Name


class ProjectCreate(Model):
    name: Name


class Project(Model):
    id: str
    name: str
    created: datetime.datetime
    flow_count: int = 0
