"""The page routes without a browser: content types, caching, strict path patterns, static files,
and the hls.js script tag only when hls.js is installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from periscope_ingest.web.pages import (
    HLSJS_NAME,
    STATIC_DIR,
    STATIC_FILES,
    StaticFiles,
    add_page_routes,
)


async def _other(request: web.Request) -> web.Response:
    return web.Response(text=f"other:{request.match_info['id']}")


@pytest.fixture
async def client():
    app = web.Application()
    # The routes the pages must not shadow (registered first, as build_app does).
    app.router.add_get("/replays/{id}/index.m3u8", _other)
    app.router.add_get("/replays/{id}.mp4", _other)
    add_page_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/", "/watch/alpha", "/watch/A_b-9", "/replays/AbCdEfGhIj_-", "/channels/alpha"]
)
async def test_pages_are_html_and_revalidated(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.text()
    assert body.startswith("<!doctype html>") and '<html lang="en">' in body


@pytest.mark.parametrize(
    "path",
    [
        "/watch/-alpha",
        "/watch/al.pha",
        "/watch/" + "a" * 65,
        "/replays/short",
        "/replays/AbCdEfGhIj_-x",
        "/channels/_x",
        "/static/pages/home.html",
        "/static/../pages.py",
        "/static/%2e%2e/pages.py",
        "/static/css/missing.css",
        "/static/js/common.py",
    ],
)
async def test_bad_names_and_other_files_are_not_found(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404, path


async def test_replay_page_does_not_shadow_replay_files(client: TestClient) -> None:
    assert await (await client.get("/replays/AbCdEfGhIj_-.mp4")).text() == "other:AbCdEfGhIj_-"
    playlist = await client.get("/replays/AbCdEfGhIj_-/index.m3u8")
    assert await playlist.text() == "other:AbCdEfGhIj_-"


async def test_static_files_have_types_and_validators(client: TestClient) -> None:
    for path, content_type in [
        ("/static/css/site.css", "text/css; charset=utf-8"),
        ("/static/js/common.js", "text/javascript; charset=utf-8"),
        ("/static/img/icon.svg", "image/svg+xml"),
    ]:
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Type"] == content_type
        assert response.headers["Cache-Control"] == "no-cache"
        etag = response.headers["ETag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status == 304
    head = await client.head("/static/js/common.js")
    assert head.status == 200 and int(head.headers["Content-Length"]) > 0


async def test_hlsjs_script_only_when_installed(client: TestClient, tmp_path: Path) -> None:
    installed = (STATIC_DIR / HLSJS_NAME).is_file()
    body = await (await client.get("/watch/alpha")).text()
    assert ('src="/static/vendor/hls.min.js"' in body) == installed
    # Without hls.js: no script tag, so the browser never fetches a missing file.
    root = tmp_path / "static"
    shutil.copytree(STATIC_DIR, root, ignore=shutil.ignore_patterns("vendor"))
    files: StaticFiles = client.server.app[STATIC_FILES]
    files.root = root
    files.scan()
    for path in ("/watch/alpha", "/replays/AbCdEfGhIj_-"):
        body = await (await client.get(path)).text()
        assert "hls.min.js" not in body
        assert "/static/js/" in body
    # Installed later (scripts/install-hlsjs.sh while the server runs): found without a restart.
    (root / "vendor").mkdir()
    (root / HLSJS_NAME).write_text("/* hls.js */\n")
    files._scanned_at = float("-inf")  # past the rescan interval
    body = await (await client.get("/watch/alpha")).text()
    assert 'src="/static/vendor/hls.min.js"' in body
    assert (await client.get("/static/" + HLSJS_NAME)).status == 200


@pytest.mark.e2e  # what the browser tests need; a bare `pip install -e .` has no hls.js yet
def test_hlsjs_installed_for_the_browser_tests() -> None:
    assert (STATIC_DIR / HLSJS_NAME).is_file(), "hls.js is missing: run scripts/install-hlsjs.sh"
