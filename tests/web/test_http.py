"""The HTTP side over real sockets: content types, caching, Range, HEAD, CORS, path safety."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from periscope_ingest.config import load_settings
from periscope_ingest.service import Service

BROADCAST = "AbCdEfGhIjKl"
SEGMENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
async def service(tmp_path: Path):
    settings = load_settings(
        host="127.0.0.1", rtmp_port=0, http_port=0, data_dir=tmp_path / "d", open_publish=True
    )
    svc = Service(settings)
    await svc.start()
    channel = svc.layout.channel_dir("chan")
    (channel / BROADCAST).mkdir(parents=True)
    (channel / BROADCAST / "000000.ts").write_bytes(SEGMENT)
    (channel / "index.m3u8").write_text("#EXTM3U\n")
    (channel / "master.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "secret.txt").write_text("not for you")
    yield svc
    await svc.stop()


async def fetch(svc: Service, path: str, method: str = "GET", headers: dict | None = None):
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"http://127.0.0.1:{svc.http_port}{path}", headers=headers
        ) as response,
    ):
        return response.status, response.headers, await response.read()


async def test_playlists_have_hls_type_short_cache_and_cors(service: Service) -> None:
    for name in ("index.m3u8", "master.m3u8"):
        status, headers, body = await fetch(service, f"/live/chan/{name}")
        assert status == 200 and body == b"#EXTM3U\n"
        assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert headers["Cache-Control"] == "max-age=1, must-revalidate"
        assert headers["Access-Control-Allow-Origin"] == "*"


async def test_segment_is_immutable_and_supports_range_and_head(service: Service) -> None:
    path = f"/live/chan/{BROADCAST}/000000.ts"
    status, headers, body = await fetch(service, path)
    assert status == 200 and body == SEGMENT
    assert headers["Content-Type"] == "video/mp2t"
    assert "immutable" in headers["Cache-Control"]

    status, headers, body = await fetch(service, path, headers={"Range": "bytes=100-299"})
    assert status == 206
    assert body == SEGMENT[100:300]
    assert headers["Content-Range"] == f"bytes 100-299/{len(SEGMENT)}"

    status, headers, body = await fetch(service, path, method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == len(SEGMENT)

    etag = (await fetch(service, path))[1]["ETag"]
    status, _, _ = await fetch(service, path, headers={"If-None-Match": etag})
    assert status == 304


async def test_cors_preflight_allows_range(service: Service) -> None:
    status, headers, _ = await fetch(
        service,
        f"/live/chan/{BROADCAST}/000000.ts",
        method="OPTIONS",
        headers={"Origin": "https://player.example", "Access-Control-Request-Headers": "range"},
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Range" in headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    "path",
    [
        "/live/nobody/index.m3u8",
        "/live/chan/ZZZZZZZZZZZZ/000000.ts",
        f"/live/chan/{BROADCAST}/000001.ts",
        "/live/../secret.txt",
        "/live/chan/../../secret.txt",
        "/live/%2e%2e/index.m3u8",
        f"/live/chan/{BROADCAST}/..%2f..%2f..%2fsecret.txt",
        "/live/chan/%2e%2e%2f%2e%2e/secret.txt",
        f"/live/chan/{BROADCAST}/%2e%2e",
        "/live/.hidden/index.m3u8",
        f"/live/chan/{BROADCAST}/.000000.ts.part",
    ],
)
async def test_unknown_and_escaping_paths_are_404(service: Service, path: str) -> None:
    status, headers, body = await fetch(service, path)
    assert status == 404, path
    assert b"not for you" not in body
    assert headers["Access-Control-Allow-Origin"] == "*"


async def test_streams_and_health_are_json(service: Service) -> None:
    status, headers, body = await fetch(service, "/api/streams")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"streams": []}
    status, _, body = await fetch(service, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


async def test_service_stop_leaves_no_listener(service: Service) -> None:
    port = service.http_port
    await service.stop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    await service.start()  # the fixture stops it again


async def test_changing_or_deleting_broadcasts_needs_the_admin_token(tmp_path: Path) -> None:
    from periscope_ingest.storage.catalog import BroadcastRecord

    settings = load_settings(
        host="127.0.0.1",
        rtmp_port=0,
        http_port=0,
        data_dir=tmp_path / "d",
        admin_token="s3cret-token",
        open_publish=True,
    )
    svc = Service(settings)
    await svc.start()
    try:
        assert svc.catalog is not None
        record = BroadcastRecord(BROADCAST, "chan", "2026-01-01T00:00:00.000Z", status="ended")
        svc.catalog.put(record)
        svc.layout.broadcast_dir("chan", BROADCAST).mkdir(parents=True)
        path = f"/api/broadcasts/{BROADCAST}"
        assert (await fetch(svc, path, "DELETE"))[0] == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await fetch(svc, path, "DELETE", headers=wrong))[0] == 401
        good = {"Authorization": "Bearer s3cret-token"}
        status, _, _ = await fetch(
            svc, path, "PATCH", headers={**good, "Content-Type": "application/json"}
        )
        assert status == 400  # no JSON body
        async with (
            aiohttp.ClientSession() as session,
            session.patch(
                f"http://127.0.0.1:{svc.http_port}{path}", json={"title": "Hello"}, headers=good
            ) as response,
        ):
            assert response.status == 200
            assert (await response.json())["title"] == "Hello"
        assert (await fetch(svc, path, "DELETE", headers=good))[0] == 204
        assert (await fetch(svc, path))[0] == 404
    finally:
        await svc.stop()


async def test_broadcast_listing_validates_and_paginates(service: Service) -> None:
    from periscope_ingest.storage.catalog import BroadcastRecord

    assert service.catalog is not None
    for i in range(5):
        service.catalog.put(
            BroadcastRecord(f"id{i:010d}", "chan", f"2026-01-0{i + 1}T00:00:00.000Z", "ended")
        )
    for bad in ("limit=0", "limit=x", "status=weird", "channel=../x", "cursor=!!"):
        status, _, _ = await fetch(service, f"/api/broadcasts?{bad}")
        assert status == 400, bad
    seen = []
    path = "/api/broadcasts?channel=chan&limit=2"
    while path:
        status, _, body = await fetch(service, path)
        assert status == 200
        page = json.loads(body)
        seen += [b["id"] for b in page["broadcasts"]]
        path = page["next"]
    assert seen == [f"id{i:010d}" for i in reversed(range(5))]
    status, _, _ = await fetch(service, "/api/broadcasts/id0000000001")
    assert status == 200
    assert (await fetch(service, "/api/broadcasts/AbCdEfGhIjKz"))[0] == 404


async def test_streamed_downloads_carry_cors_headers_too(service: Service) -> None:
    # A streamed response (the archive zip) sends its headers from inside the handler.
    from periscope_ingest.storage.catalog import BroadcastRecord

    assert service.catalog is not None
    record = BroadcastRecord(BROADCAST, "chan", "2026-01-01T00:00:00.000Z", "ended", segments=1)
    service.catalog.put(record)
    (service.layout.broadcast_dir("chan", BROADCAST) / "recording.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n000000.ts\n#EXT-X-ENDLIST\n"
    )
    status, headers, _ = await fetch(service, "/api/channels/chan/archive.zip", method="HEAD")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "query",
    [
        "_HLS_msn=\u00b2",  # '²': str.isdigit() says yes, int() says no
        "_HLS_msn=\u0663",  # an Arabic-Indic three
        "_HLS_msn=1&_HLS_part=\u00b9",
        "_HLS_msn=" + "9" * 5000,  # more digits than int() converts
        "_HLS_msn=-1",
    ],
)
async def test_a_query_number_that_is_not_ascii_digits_is_a_400(
    service: Service, query: str
) -> None:
    status, _, body = await fetch(service, f"/live/chan/index.m3u8?{query}")
    assert status == 400, body
    assert b"must be a non-negative integer" in body


@pytest.mark.parametrize("limit", ["\u00b2", "\u0665\u0660", "5_0", " 50"])
async def test_the_api_limit_is_ascii_digits(service: Service, limit: str) -> None:
    status, _, body = await fetch(service, f"/api/broadcasts?limit={limit}")
    assert status == 400 and b"limit" in body


@pytest.mark.parametrize("suffix", ["bytes=-0", "bytes=-000", "BYTES = -0"])
async def test_a_range_of_the_last_zero_bytes_is_unsatisfiable(
    service: Service, suffix: str
) -> None:
    path = f"/live/chan/{BROADCAST}/000000.ts"
    status, _, body = await fetch(service, path, headers={"Range": suffix})
    assert status == 416 and len(body) < len(SEGMENT)
    # The last byte is still a range like any other.
    status, _, body = await fetch(service, path, headers={"Range": "bytes=-1"})
    assert status == 206 and body == SEGMENT[-1:]
