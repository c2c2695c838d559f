"""Serve the dashboard: the page at `/` and its assets under /dashboard/static (no build step)."""
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/dashboard/static"
# Revalidate on every load (a 304 when unchanged): after an upgrade no stale module mixes with
# new ones.
_ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# Everything the page loads comes from this origin; data it shows is never parsed as HTML.
_PAGE_HEADERS = {**_ASSET_HEADERS,
                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                            "object-src 'none'; base-uri 'none'; "
                                            "frame-ancestors 'none'"}

router = APIRouter(include_in_schema=False)


class _Assets(StaticFiles):
    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(_ASSET_HEADERS)
        return response


@router.get("/")
def index() -> FileResponse:
    """The dashboard's single page (hash-routed)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


def install(app: FastAPI) -> None:
    """Mount the page and its assets; only `/` and /dashboard/static, so /v1 and ops are untouched."""
    app.include_router(router)
    app.mount(STATIC_PREFIX, _Assets(directory=STATIC_DIR), name="dashboard-static")
