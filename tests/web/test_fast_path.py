"""The viewers' fast path over real sockets, during a real push (ffmpeg), in one server process.

What a player repeats (playlist reloads, new segments) is answered by web/fast_path.py; every
other request goes to aiohttp, with the connection. Each test checks the bytes a client gets, and
which side answered (the fast path keeps only the connections it still owns).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from periscope_ingest.service import Service
from periscope_ingest.web.fast_path import MAX_HEAD_BYTES
from tests.e2e.conftest import require
from tests.e2e.hls_check import parse_media_playlist
from tests.in_process import local_settings

pytestmark = pytest.mark.e2e  # an ffmpeg push

CHANNEL = "fast"
SECONDS = 6  # of the source the pusher loops (source_flv)
KEEPALIVE_S = 1.0
WRITE_TIMEOUT_S = 2.0


@dataclass
class Live:
    service: Service
    segment_path: str  # /live/fast/<broadcast>/<name> of a segment held in memory
    on_disk: bytes

    @property
    def fast_connections(self) -> int:
        assert self.service.http_site is not None
        return len(self.service.http_site.connections)


@pytest.fixture
async def live(tmp_path: Path, source_flv: Path) -> AsyncIterator[Live]:
    require("ffmpeg")
    settings = local_settings(
        tmp_path / "d", http_keepalive_timeout=KEEPALIVE_S, http_write_timeout=WRITE_TIMEOUT_S
    )
    service = Service(settings)
    await service.start()
    assert service.rtmp is not None
    pusher = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
         "-i", str(source_flv), "-c", "copy", "-f", "flv",
         f"rtmp://127.0.0.1:{service.rtmp.port}/live/{CHANNEL}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            edge = service.registry.edge(CHANNEL)
            update = edge.playlist if edge is not None else None
            if update is not None and update.text.count("#EXTINF") >= 1:
                break
            assert time.monotonic() < deadline, "no segment listed within 20 s"
            await asyncio.sleep(0.05)
        assert edge is not None
        edge.watched()  # the newest segments are held in memory from the next one on
        name = parse_media_playlist(update.text).segments[-1].uri
        while edge.media(name.rsplit("/", 1)[-1]) is None:
            assert time.monotonic() < deadline + 10, "no segment held in memory"
            await asyncio.sleep(0.05)
            name = parse_media_playlist(edge.playlist.text).segments[-1].uri
        on_disk = (service.layout.channel_dir(CHANNEL) / name).read_bytes()
        yield Live(service, f"/live/{CHANNEL}/{name}", on_disk)
    finally:
        pusher.kill()
        pusher.wait()
        await service.stop()


class Client:
    """One keep-alive connection, reading responses by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, service: Service) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", service.http_port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return int(status_line.split()[1]), headers, body

    async def at_eof(self, timeout: float = 10) -> bool:
        return await asyncio.wait_for(self.reader.read(1), timeout) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def get(path: str, *fields: str, version: str = "1.1") -> bytes:
    return "\r\n".join((f"GET {path} HTTP/{version}", "Host: test", *fields, "", "")).encode()


PLAYLIST = f"/live/{CHANNEL}/index.m3u8"


async def test_pipelined_player_requests_are_answered_in_order_like_aiohttp(live: Live) -> None:
    fast = await Client.connect(live.service)
    # Playlist, segment, playlist in one write, as a pipelining client sends them.
    await fast.send(get(PLAYLIST) + get(live.segment_path) + get(PLAYLIST))
    answers = [await fast.response() for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[1][2] == live.on_disk
    playlist = parse_media_playlist(answers[0][2].decode())
    assert playlist.segments and not playlist.ended
    assert live.fast_connections == 1  # still ours: all three answered here

    # The same requests made aiohttp's (a zero Content-Length hands a GET over): same headers.
    slow = await Client.connect(live.service)
    await slow.send(get(PLAYLIST, "Content-Length: 0"))
    await slow.send(get(live.segment_path, "Content-Length: 0"))
    by_aiohttp = [await slow.response() for _ in range(2)]
    assert live.fast_connections == 1
    pairs = zip(answers[:2], by_aiohttp, strict=True)
    for index, ((_, ours, _), (status, theirs, _)) in enumerate(pairs):
        assert status == 200
        ours, theirs = dict(ours), dict(theirs)
        del ours["date"], theirs["date"]
        if index == 0:  # the playlist may have grown by a segment in between
            del ours["content-length"], theirs["content-length"]
        assert ours == theirs
    assert by_aiohttp[1][2] == live.on_disk
    await fast.close()
    await slow.close()


async def test_a_request_sent_byte_by_byte_and_the_hand_over_to_aiohttp(live: Live) -> None:
    client = await Client.connect(live.service)
    for byte in get(live.segment_path):
        await client.send(bytes([byte]))
    status, _, body = await client.response()
    assert status == 200 and body == live.on_disk
    assert live.fast_connections == 1

    # A Range request is the file's: aiohttp answers it, and everything after on this connection.
    await client.send(get(live.segment_path, "Range: bytes=188-375"))
    status, headers, body = await client.response()
    assert status == 206 and body == live.on_disk[188:376]
    assert headers["content-range"] == f"bytes 188-375/{len(live.on_disk)}"
    assert live.fast_connections == 0
    await client.send(get("/healthz") + get(live.segment_path))
    assert (await client.response())[0] == 200
    status, _, body = await client.response()
    assert status == 200 and body == live.on_disk  # from memory, by web/live.py
    await client.close()

    # Malformed or oversized heads reach aiohttp, which refuses them; the stream carries on.
    bad = await Client.connect(live.service)
    await bad.send(b"GET /live/fast/index.m3u8 HTTP/1.1\r\nno colon\r\n\r\n")
    assert (await bad.response())[0] == 400
    huge = await Client.connect(live.service)
    await huge.send(get(PLAYLIST, "X-Filler: " + "a" * 3 * MAX_HEAD_BYTES))
    assert (await huge.response())[0] in (400, 431)
    again = await Client.connect(live.service)
    await again.send(get(PLAYLIST))
    assert (await again.response())[0] == 200
    for c in (bad, huge, again):
        await c.close()


async def test_segments_not_held_in_memory_are_read_from_their_file(live: Live) -> None:
    """The first segment was made before anyone watched: read from disk, still answered here,
    in order with what follows it; a missing one is aiohttp's 404."""
    broadcast = live.segment_path.split("/")[3]
    first = f"/live/{CHANNEL}/{broadcast}/000000.ts"
    on_disk = (live.service.layout.channel_dir(CHANNEL) / broadcast / "000000.ts").read_bytes()
    client = await Client.connect(live.service)
    await client.send(get(first) + get(PLAYLIST) + get(first))
    status, headers, body = await client.response()
    assert status == 200 and body == on_disk and headers["content-type"] == "video/mp2t"
    assert (await client.response())[0] == 200
    assert (await client.response())[2] == on_disk
    assert live.fast_connections == 1
    # Read once, then held with the newest segments: the next viewers get it from memory.
    edge = live.service.registry.edge(CHANNEL)
    assert edge is not None and edge.playlist is not None
    assert edge.media("000000.ts") == on_disk or edge.playlist.next_sequence > 3
    await client.send(get(f"/live/{CHANNEL}/{broadcast}/999999.ts"))
    assert (await client.response())[0] == 404
    assert live.fast_connections == 0
    await client.close()


async def test_connection_close_http10_and_the_idle_limit(live: Live) -> None:
    closing = await Client.connect(live.service)
    await closing.send(get(PLAYLIST, "Connection: close"))
    status, headers, _ = await closing.response()
    assert status == 200 and headers["connection"] == "close"
    assert await closing.at_eof()

    old = await Client.connect(live.service)
    await old.send(get(live.segment_path, version="1.0"))
    status, headers, body = await old.response()
    assert status == 200 and headers["connection"] == "close" and body == live.on_disk
    assert await old.at_eof()

    kept = await Client.connect(live.service)
    await kept.send(get(PLAYLIST, "Connection: keep-alive", version="1.0") * 2)
    for _ in range(2):
        status, headers, _ = await kept.response()
        assert status == 200 and headers["connection"] == "keep-alive"

    # Idle, or a head that never ends: closed after http_keepalive_timeout (plus one sweep).
    stalled = await Client.connect(live.service)
    await stalled.send(b"GET /live/fast/index.m3u8 HTTP/1.1\r\nHost: te")
    started = time.monotonic()
    assert await kept.at_eof(timeout=5 * KEEPALIVE_S)
    assert await stalled.at_eof(timeout=5 * KEEPALIVE_S)
    assert time.monotonic() - started >= KEEPALIVE_S * 0.5
    assert live.fast_connections == 0


async def test_a_reader_that_falls_behind_gets_every_response(live: Live) -> None:
    """Requests pipelined faster than the client reads: the server stops reading until the
    responses drain (no unbounded buffering), then answers the rest in order."""
    client = await Client.connect(live.service)
    count = 40  # about 40 x 0.6 MB: far more than the socket buffers hold
    await client.send(get(live.segment_path) * count)
    await asyncio.sleep(0.5)  # the client reads nothing meanwhile
    assert live.service.http_site is not None
    for _ in range(count):
        status, _, body = await client.response()
        assert status == 200 and body == live.on_disk
    await client.close()


async def test_a_segment_whose_file_is_gone_does_not_desync_a_pipelined_connection(
    live: Live,
) -> None:
    """The file of a segment held in memory disappears (retention, a delete) before it is sent:
    the response is still whole, and the next pipelined one is read as itself."""
    live.service.layout.root.joinpath("channels", live.segment_path.removeprefix("/live/")).unlink()
    client = await Client.connect(live.service)
    await client.send(get(live.segment_path) + get(PLAYLIST))
    status, _, body = await client.response()
    assert status == 200 and body == live.on_disk
    status, headers, body = await client.response()
    assert status == 200 and headers["content-type"] == "application/vnd.apple.mpegurl"
    assert body.startswith(b"#EXTM3U")
    await client.close()


async def test_a_stalled_reader_is_aborted_after_the_write_timeout(live: Live) -> None:
    """A client that asks for far more than the socket buffers hold and reads nothing: its
    connection is dropped with what it did not read (not closed after sending it all), and
    the server says so."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", live.service.http_port))
    count = 400  # 400 x 70 KB: far more than the kernel buffers of both sides hold
    await loop.sock_sendall(sock, get(live.segment_path) * count)
    started = time.monotonic()
    while not live.fast_connections and time.monotonic() - started < 5:
        await asyncio.sleep(0.01)  # the server (in this event loop) takes the connection
    assert live.fast_connections == 1
    while live.fast_connections and time.monotonic() - started < 10:
        await asyncio.sleep(0.1)
    assert not live.fast_connections
    assert time.monotonic() - started >= WRITE_TIMEOUT_S - 0.5
    received = 0
    with contextlib.suppress(ConnectionResetError):
        while data := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5):
            received += len(data)
    sock.close()
    assert received < count * len(live.on_disk) / 2, received
