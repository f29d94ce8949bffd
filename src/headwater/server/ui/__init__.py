"""The web UI: static files (``static/``) the server serves at ``/`` and ``/ui/``.

There is no build step: the pages are plain ES modules, HTML, CSS and SVG shipped in the
package (``pyproject.toml``'s package data). They talk to the API under ``/api/v1`` like any
other client; ``docs/ui.md`` is the user's side.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
#: index.html may change with every release: the browser must ask again, not reuse a stale copy.
NO_CACHE = {"Cache-Control": "no-cache"}


class _Revalidated(StaticFiles):
    """Static files the browser revalidates (ETag) on each load, so an upgrade shows at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_ui(app: FastAPI) -> None:
    """Serve ``index.html`` at ``/`` and the static folder under ``/ui/`` (not in the API's OpenAPI)."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_CACHE)

    @app.get("/ui/pages.json", include_in_schema=False)
    def pages() -> JSONResponse:
        # the page modules this server has: the router says "not available yet" for the others
        # without asking for a file that is not there (which the browser would log as an error)
        names = sorted(p.name for p in (STATIC / "pages").glob("*.js"))
        return JSONResponse(names, headers=NO_CACHE)

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/")

    app.mount("/ui", _Revalidated(directory=STATIC), name="ui")
