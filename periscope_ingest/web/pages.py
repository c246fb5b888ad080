"""The web pages: static HTML shells whose scripts call the JSON API, and their static files.

Pages: ``/`` (live now and recent replays), ``/watch/{channel}``, ``/replays/{id}`` (register
after the replay routes: ``/replays/{id}.mp4`` and ``/replays/{id}/...`` are other routes) and
``/channels/{handle}``. Path parameters are checked against the same patterns as the storage
names and are never used to build a file path: the pages read them from ``location`` themselves.

``/static/{name}`` serves only the files found under ``static/`` when the app starts (looked up in
a table, so no request path ever reaches the file system). hls.js is optional
(scripts/install-hlsjs.sh puts it in ``static/vendor/``): a page includes it only when it is there,
so a browser never asks for a file that is missing (no 404 in its console) and falls back to its
native HLS player.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from periscope_ingest.storage.layout import BROADCAST_ID_PATTERN, CHANNEL_PATTERN

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGES_DIR = STATIC_DIR / "pages"
HLSJS_NAME = "vendor/hls.min.js"
HLSJS_MARK = "<!-- hls.js -->"

HTML_TYPE = "text/html; charset=utf-8"
# Shells are tiny and change with the code: always revalidated (ETag), never stale after an upgrade.
PAGE_CACHE = "no-cache"
STATIC_CACHE = "no-cache"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
# Pages only talk to this server; hls.js runs its transmuxer in a worker made from a blob: URL
# and feeds the <video> through MediaSource (blob: media URL).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
RESCAN_INTERVAL = 5.0  # s: how often a miss may look for files added since (hls.js installed)


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path
    content_type: str


class StaticFiles:
    """The table of files under ``static/`` that may be served, keyed by their relative name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, StaticFile] = {}
        self._scanned_at = float("-inf")
        self.scan()

    def scan(self) -> None:
        files: dict[str, StaticFile] = {}
        if self.root.is_dir():
            for path in self.root.rglob("*"):
                content_type = STATIC_TYPES.get(path.suffix)
                # Regular files only (no symlinks out of the tree), and not the page shells.
                if content_type is None or path.is_symlink() or not path.is_file():
                    continue
                name = path.relative_to(self.root).as_posix()
                if name.startswith("pages/") or any(p.startswith(".") for p in name.split("/")):
                    continue
                files[name] = StaticFile(path, content_type)
        self._files = files
        self._scanned_at = time.monotonic()

    def get(self, name: str) -> StaticFile | None:
        found = self._files.get(name)
        if found is None and time.monotonic() - self._scanned_at > RESCAN_INTERVAL:
            self.scan()
            found = self._files.get(name)
        return found

    def has(self, name: str) -> bool:
        found = self.get(name)
        return found is not None and found.path.is_file()


STATIC_FILES = web.AppKey("static_files", StaticFiles)


def _shell(name: str) -> str:
    return (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")


def page(name: str, plays_video: bool = False):
    """The handler for one HTML shell, read once; the hls.js script tag is put in when hls.js is
    installed."""
    html = _shell(name)
    script = f'<script src="/static/{HLSJS_NAME}"></script>'
    headers = {"Content-Type": HTML_TYPE, "Cache-Control": PAGE_CACHE, **SECURITY_HEADERS}

    async def handler(request: web.Request) -> web.Response:
        text = html
        if plays_video and request.app[STATIC_FILES].has(HLSJS_NAME):
            text = html.replace(HLSJS_MARK, script, 1)
        return web.Response(text=text, headers=headers)

    return handler


async def static_file(request: web.Request) -> web.StreamResponse:
    found = request.app[STATIC_FILES].get(request.match_info["name"])
    if found is None or not found.path.is_file():
        raise web.HTTPNotFound(text="not found\n")
    return web.FileResponse(
        found.path,
        headers={
            "Content-Type": found.content_type,
            "Cache-Control": STATIC_CACHE,
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_page_routes(app: web.Application) -> None:
    """Register after the API and replay routes (``/replays/{id}`` must not shadow theirs)."""
    channel = CHANNEL_PATTERN.pattern
    broadcast = BROADCAST_ID_PATTERN.pattern
    app[STATIC_FILES] = StaticFiles(STATIC_DIR)
    app.router.add_get("/", page("home"))
    app.router.add_get(f"/watch/{{channel:{channel}}}", page("watch", plays_video=True))
    app.router.add_get(f"/replays/{{id:{broadcast}}}", page("replay", plays_video=True))
    app.router.add_get(f"/channels/{{handle:{channel}}}", page("channel"))
    app.router.add_get("/static/{name:[A-Za-z0-9_][A-Za-z0-9_./-]{0,200}}", static_file)
