"""The playground: a page at ``/`` to try the farm in a browser (static files shipped in the package)."""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(tags=["playground"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "playground"
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# Only the files shipped with the page are served; a name never reaches the filesystem unchecked.
ASSETS = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in MEDIA_TYPES}

# The page talks only to this gateway; images may come from an S3 endpoint, so any image source is allowed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src * data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate (ETag) so a new release's page never runs with the last release's scripts.
    "Cache-Control": "no-cache",
}


def asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise HTTPException(404, "File not found.")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)


@router.get("/")
def playground_page() -> FileResponse:
    """The playground page."""
    return asset("index.html")


@router.get("/playground/{name}")
def playground_asset(name: str) -> FileResponse:
    """A script, style sheet or icon of the playground page."""
    return asset(name)
