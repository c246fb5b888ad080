"""A restream target that stops reading: frames are dropped until a keyframe, ingest never waits."""

from __future__ import annotations

import asyncio
import time

from periscope_ingest.config_sections import RestreamSettings
from periscope_ingest.live.restream import ChannelRestream
from periscope_ingest.metrics import Metrics
from periscope_ingest.rtmp.connection import (
    MetadataReceived,
    PublishRequested,
    ServerConnection,
    VideoReceived,
)
from periscope_ingest.storage.restream import RestreamTarget

AVC_HEADER = b"\x17\x00\x00\x00\x00" + bytes.fromhex("01640028ffe1")
AAC_HEADER = b"\xaf\x00\x12\x10"
FRAME_BYTES = 20_000
GOP = 10


def frame(index: int) -> bytes:
    """Video frame number `index`: a keyframe every GOP frames; the number is in the payload."""
    flags = b"\x17" if index % GOP == 0 else b"\x27"
    body = index.to_bytes(4, "big")
    return flags + b"\x01\x00\x00\x00" + body + bytes(FRAME_BYTES - len(body))


class Target(asyncio.Protocol):
    """Our own sans-IO server as the target, able to stop reading like a stalled server."""

    def __init__(self) -> None:
        self.conn = ServerConnection()
        self.events: list = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, PublishRequested):
                self.conn.accept_publish(event.stream_id)
            self.events.append(event)
        assert self.transport is not None
        self.transport.write(self.conn.data_to_send())


async def wait_until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def videos(target: Target) -> list[tuple[int, bytes]]:
    return [(e.timestamp, e.payload) for e in target.events if isinstance(e, VideoReceived)]


async def test_a_stalled_target_drops_until_a_keyframe_and_gets_headers_again():
    target = Target()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: target, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = RestreamSettings(queue_bytes=65536, retry_delay=0.1, connect_timeout=5)
    tasks: set[asyncio.Task] = set()
    tee = ChannelRestream("chan", settings, Metrics(), tasks.add)
    try:
        tee.metadata({"width": 640.0})
        tee.video(5000, AVC_HEADER)
        tee.audio(5000, AAC_HEADER)
        tee.set_targets([RestreamTarget(1, "chan", f"rtmp://127.0.0.1:{port}/live/k", "")])
        link = tee.links[1]
        await wait_until(lambda: link.state == "live")

        # Frames 0-9 flow; then the target stops reading for many megabytes' worth.
        index = 0
        slowest = 0.0
        for index in range(GOP):
            tee.video(5000 + index * 33, frame(index))
            await asyncio.sleep(0.001)
        await wait_until(lambda: len(videos(target)) == 1 + GOP)
        assert target.transport is not None
        target.transport.pause_reading()
        for index in range(GOP, 60 * GOP):
            started = time.perf_counter()
            tee.video(5000 + index * 33, frame(index))
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0)  # the target's writer runs, and blocks on the full socket
        assert link.drops > 0
        # Offering a frame never waits for the target: a write that waited would block on the
        # full socket for good; a quarter second leaves room for a loaded machine's scheduler.
        assert slowest < 0.25, slowest
        assert link.state == "live"

        target.transport.resume_reading()
        for index in range(60 * GOP, 64 * GOP):
            tee.video(5000 + index * 33, frame(index))
            await asyncio.sleep(0.005)
        last = 64 * GOP - 1
        await wait_until(lambda: int.from_bytes(videos(target)[-1][1][5:9], "big") == last)
    finally:
        tee.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()

    received = videos(target)
    # Timestamps are rebased to the first keyframe and never go back.
    assert received[0] == (0, AVC_HEADER)
    assert received[1][0] == 0
    stamps = [stamp for stamp, _ in received]
    assert stamps == sorted(stamps)
    # Every gap (frames dropped) is followed by the sequence header, then a keyframe.
    numbers = []
    gaps = 0
    for position, (_, payload) in enumerate(received):
        if payload == AVC_HEADER:
            continue
        number = int.from_bytes(payload[5:9], "big")
        if numbers and number != numbers[-1] + 1:
            gaps += 1
            assert received[position - 1][1] == AVC_HEADER
            assert number % GOP == 0
        numbers.append(number)
    assert gaps >= 1
    dropped = 64 * GOP - len(numbers)
    assert dropped == link.drops
    assert any(isinstance(e, MetadataReceived) for e in target.events)
