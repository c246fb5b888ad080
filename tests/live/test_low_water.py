"""read_pacing.LowWater on a real TCP connection: the kernel holds a read back until the mark
is reached, and a tick without reads lowers the mark so what is buffered is read at once."""

from __future__ import annotations

import asyncio
import selectors
import socket

import pytest

from periscope_ingest.live.read_pacing import LOW_WATER_MAX, LowWater, ReadPacer


@pytest.fixture
def tcp_pair():
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname(), timeout=5)
    receiver, _ = listener.accept()
    listener.close()
    yield sender, receiver
    sender.close()
    receiver.close()


def readable(sock: socket.socket) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(timeout=0.2))


def test_mark_holds_reads_back_and_a_quiet_tick_releases_them(tcp_pair) -> None:
    sender, receiver = tcp_pair
    pacing = LowWater(receiver)
    pacing.read(40_000)  # a tick's worth of a ~6 Mb/s stream
    pacing.tick()
    assert pacing.mark == 30_000 and pacing.changes == 1
    sender.sendall(b"x" * 1000)
    assert not readable(receiver)  # under the mark: the kernel does not wake the reader
    pacing.tick()  # a whole tick without a read
    assert pacing.mark == 1
    assert readable(receiver)
    assert receiver.recv(65536) == b"x" * 1000
    pacing.read(1000)  # that read puts the mark back at once
    assert pacing.mark == 30_000 and pacing.changes == 3
    sender.sendall(b"y" * 30_000)
    assert readable(receiver)  # the mark reached


def test_mark_follows_the_rate_with_slack_and_a_cap(tcp_pair) -> None:
    _, receiver = tcp_pair
    pacing = LowWater(receiver)
    for got in (20_000, 21_000, 19_000):  # within a quarter: set once
        pacing.read(got)
        pacing.tick()
    assert pacing.changes == 1 and pacing.mark == 15_000
    for _ in range(20):
        pacing.read(1_000_000)
        pacing.tick()
    assert pacing.mark == LOW_WATER_MAX
    # Two quiet ticks then a read of both ticks' bytes: the rate is per tick, not per read.
    quiet = LowWater(receiver)
    quiet.read(8000)
    quiet.tick()
    quiet.tick()
    quiet.read(16_000)
    quiet.tick()
    assert quiet.rate == 8000


async def test_reads_are_unpaced_while_a_cut_is_due_and_paced_again_after() -> None:
    """ReadPacer.unpaced (the keyframe closing a segment is due, live/next_cut.py) drops the
    mark to one byte; the first paced read after it puts the mark back."""

    class Publisher:  # what the pacer keeps of an RtmpSession: a key and two flags
        pacing_tried = False
        resting = False

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    transport, _ = await asyncio.get_running_loop().create_connection(
        asyncio.Protocol, *server.sockets[0].getsockname()[:2]
    )
    pacer = ReadPacer(10.0, "lowat")  # ticks by hand below
    publisher = Publisher()
    try:
        pacer.after_read(publisher, transport, 40_000)
        marked = pacer.low_water(publisher)
        assert marked is not None
        marked.tick()
        assert marked.mark == 30_000
        pacer.unpaced(publisher)
        assert marked.mark == 1
        pacer.after_read(publisher, transport, 5_000)
        assert marked.mark == 30_000
    finally:
        pacer.stop()
        transport.close()
        server.close()
        await server.wait_closed()
