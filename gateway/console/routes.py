"""`GET /console/...`: the console's static files, read once from the package, answered with a
strict Content-Security-Policy (scripts and styles from the gateway itself only, no inline
script, no framing) and revalidated by ETag; the page itself is never cached.

The files carry no secret: a browser holds the admin credential and sends it to the admin API,
which checks it on every call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from gateway.errors import NotFound

STATIC = Path(__file__).with_name("static")
INDEX = "index.html"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, media type and entity tag."""

    body: bytes
    media_type: str
    etag: str


def load_assets(root: Path = STATIC) -> dict[str, Asset]:
    """Every file under `root` with a known media type, by its path relative to `root`."""
    assets = {}
    for path in sorted(root.rglob("*")):
        media_type = _MEDIA_TYPES.get(path.suffix)
        if media_type is not None and path.is_file():
            body = path.read_bytes()
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            assets[path.relative_to(root).as_posix()] = Asset(body, media_type, etag)
    return assets


def console_routes(assets: dict[str, Asset] | None = None) -> APIRouter:
    """`/console` (a redirect to `/console/`, so that the page's relative links resolve under
    whatever prefix a proxy serves the gateway at), the page at `/console/` and its files."""
    files = load_assets() if assets is None else assets
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    async def console_root() -> Response:
        return RedirectResponse("console/", status_code=308, headers=_HEADERS)

    @router.get("/console/{name:path}")
    async def console_file(request: Request, name: str) -> Response:
        asset = files.get(name or INDEX)
        if asset is None:
            raise NotFound(f"The console has no file {name!r}.", param="name")
        # The page is fetched afresh every time; its scripts and styles are revalidated.
        cache = "no-store" if (name or INDEX) == INDEX else "no-cache"
        headers = {**_HEADERS, "cache-control": cache, "etag": asset.etag}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    return router
