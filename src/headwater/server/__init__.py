"""The headwater API server: routes (api) → queries (models) → tables (database); services.

Needs the ``server`` extra (FastAPI, uvicorn, SQLAlchemy, Alembic). The client
side is ``headwater.client``; both share ``headwater.schemas``.
"""
