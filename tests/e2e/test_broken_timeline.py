"""A publisher whose clock jumps about, and a recording that cannot be written, end to end.

Before (#13 item 5), clock jumps that were each handled alone made, together, a segment longer
than EXT-X-TARGETDURATION: the writer refused it and the rest of the broadcast was lost while
the publisher kept sending. Now every second sent is recorded, with a discontinuity where the
clock broke; and if writing fails anyway, the publisher is told, so that it reconnects.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from periscope_ingest.rtmp.chunk import Message
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.server import ServerProcess
from tests.flv_file import read_tags
from tests.rtmp.client import C0_C1, C2, ScriptedClient, ServerOutput

pytestmark = pytest.mark.e2e

SECONDS = 10
# (from this media time in ms, the clock moves by): back 5 s, ahead an hour, back 3 s, and
# twice ahead by 1.5 s (less than a jump: kept as a gap), none of them on a keyframe.
JUMPS = [(2500, -5000), (4500, 3_600_000), (6500, -3000), (7300, 1500), (8100, 1500)]


def jumped(flv: Path) -> list[tuple[int, int, bytes]]:
    tags = []
    for kind, timestamp, body in read_tags(flv):
        moved = timestamp + 10_000_000 + sum(d for at, d in JUMPS if timestamp >= at)
        tags.append((kind, moved % (1 << 32), body))
    return tags


class Publisher:
    """An RTMP publisher sending prepared FLV tags as they are, timestamps included."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.key = key
        self.client = ScriptedClient(4096)
        self.output = ServerOutput()
        self.sock = socket.create_connection(("127.0.0.1", server.rtmp_port), 10)
        self.sock.settimeout(10)
        self.sock.sendall(
            C0_C1
            + C2
            + ScriptedClient().set_chunk_size(4096)
            + self.client.command("connect", 1, {"app": "live"})
            + self.client.command("createStream", 2, None)
            + self.client.command("publish", 3, None, key, "live", stream_id=1)
        )
        assert self.status() == "NetStream.Publish.Start"

    def status(self) -> str | None:
        """The code of the next onStatus from the server (None if it closed first)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionError:
                return None
            if not data:
                return None
            for reply in self.output.feed(data):
                if reply.name == "onStatus":
                    return reply.values[3]["code"]

    def send(self, tags) -> None:
        for kind, timestamp, body in tags:
            self.sock.sendall(self.client.writer.write(Message(4, kind, 1, timestamp, body)))

    def unpublish(self) -> None:
        self.sock.sendall(
            self.client.command("FCUnpublish", 4, None, self.key)
            + self.client.command("deleteStream", 5, None, 1.0)
        )
        self.sock.close()


def test_every_second_sent_is_recorded_across_clock_jumps(
    server: ServerProcess, source_flv: Path
) -> None:
    publisher = Publisher(server, "jumpy")
    publisher.send(jumped(source_flv))
    publisher.unpublish()
    listed = server.wait_for(
        lambda: [b for b in server.get_json("/api/broadcasts?channel=jumpy")["broadcasts"]
                 if b["status"] == "ended"],
        20, what="the broadcast to end",
    )  # fmt: skip
    status, _, body = server.get(f"/replays/{listed[0]['id']}/index.m3u8")
    assert status == 200
    replay = parse_media_playlist(body.decode())
    assert replay.ended
    durations = [s.duration for s in replay.segments]
    # Every second sent, plus the two 1.5 s gaps kept as time; one frame of slack per break.
    assert SECONDS - 0.15 <= sum(durations) <= SECONDS + 3.0 + 0.15, durations
    assert all(round(d) <= replay.target_duration for d in durations), durations
    assert sum(s.discontinuity for s in replay.segments) >= 3
    for segment in replay.segments:
        status, _, data = server.get(f"/replays/{listed[0]['id']}/{segment.uri}")
        assert status == 200 and len(data) > 1000
    log = server.log()
    assert "segment_writer_failed" not in log and "Traceback" not in log


# The issue's own timeline, exactly: back 5 s at 2 s, ahead an hour at 4 s, back 3 s at 6 s.
ISSUE_JUMPS = [(2000, -5000), (4000, 3_600_000), (6000, -3000)]
VIDEO_STOPS_MS = 8000  # and then the camera stops while the audio goes on to the end


def test_the_issues_timeline_and_a_stopped_camera_lose_nothing(
    server: ServerProcess, source_flv: Path
) -> None:
    tags = []
    for kind, timestamp, body in read_tags(source_flv):
        if kind == 9 and body[1:2] == b"\x01" and timestamp >= VIDEO_STOPS_MS:
            continue
        moved = timestamp + 2**32 - 1000 + sum(d for at, d in ISSUE_JUMPS if timestamp >= at)
        tags.append((kind, moved % (1 << 32), body))
    publisher = Publisher(server, "issue")
    publisher.send(tags)
    publisher.unpublish()
    listed = server.wait_for(
        lambda: [b for b in server.get_json("/api/broadcasts?channel=issue")["broadcasts"]
                 if b["status"] == "ended"],
        20, what="the broadcast to end",
    )  # fmt: skip
    status, _, body = server.get(f"/replays/{listed[0]['id']}/index.m3u8")
    assert status == 200
    replay = parse_media_playlist(body.decode())
    durations = [s.duration for s in replay.segments]
    # Every second sent (the audio runs to the end): a frame or two of slack per break.
    assert SECONDS - 0.2 <= sum(durations) <= SECONDS + 0.2, durations
    assert replay.target_duration == 2
    assert all(round(d) <= replay.target_duration for d in durations), durations
    assert sum(s.discontinuity for s in replay.segments) == 3, replay.segments
    for segment in replay.segments:
        status, _, data = server.get(f"/replays/{listed[0]['id']}/{segment.uri}")
        assert status == 200 and len(data) > 1000
    log = server.log()
    assert "segment_writer_failed" not in log and "Traceback" not in log
    assert "segment_forced_cut channel=issue" in log and "the video stopped" in log


def test_a_recording_that_cannot_be_written_ends_the_publish_with_an_error(
    server: ServerProcess, source_flv: Path
) -> None:
    tags = list(read_tags(source_flv))
    publisher = Publisher(server, "unwritable")
    publisher.send([t for t in tags if t[1] < 4500])
    first = server.wait_for(
        lambda: server.get_json("/api/broadcasts?channel=unwritable")["broadcasts"], 10
    )[0]
    directory = server.data_dir / "channels" / "unwritable" / first["id"]
    server.wait_for(lambda: (directory / "000000.ts").is_file(), 10, what="a first segment")
    # The broadcast's directory is gone and a file stands in its way: nothing more can be
    # written there (the disk of a real server failing, as far as the writer can tell).
    shutil.move(directory, directory.with_name("moved-away"))
    directory.write_text("")
    publisher.send([t for t in tags if t[1] >= 4500])
    assert publisher.status() == "NetStream.Publish.Failed"
    line = server.wait_for(
        lambda: [x for x in server.log().splitlines() if "publish_failed" in x], 10
    )[0]
    assert "channel=unwritable" in line and "could not be written" in line
    ended = server.wait_for(
        lambda: server.get_json(f"/api/broadcasts/{first['id']}")["status"] != "live", 10
    )
    assert ended


def test_a_recording_that_failed_while_its_publisher_was_away_is_not_continued(
    server: ServerProcess, source_flv: Path
) -> None:
    # The writer fails while nobody publishes (closing the open segment when the connection
    # drops): the encoder that reconnects within the grace window must get a new broadcast that
    # records, not the old one whose writer takes nothing any more.
    tags = list(read_tags(source_flv))
    first_publisher = Publisher(server, "away")
    first_publisher.send([t for t in tags if t[1] < 4500])
    first = server.wait_for(
        lambda: server.get_json("/api/broadcasts?channel=away")["broadcasts"], 10
    )[0]
    directory = server.data_dir / "channels" / "away" / first["id"]
    server.wait_for(lambda: (directory / "000000.ts").is_file(), 10, what="a first segment")
    shutil.move(directory, directory.with_name("moved-away"))
    directory.write_text("")
    first_publisher.sock.close()  # dropped, no unpublish: the broadcast waits for a reconnect
    server.wait_for(
        lambda: f"segment_writer_failed broadcast={first['id']}" in server.log(), 10,
        what="the writer to fail",
    )  # fmt: skip
    again = Publisher(server, "away")
    again.send([(kind, ts + 5000, body) for kind, ts, body in tags])
    again.unpublish()
    broadcasts = server.wait_for(
        lambda: [b for b in server.get_json("/api/broadcasts?channel=away")["broadcasts"]
                 if b["id"] != first["id"] and b["status"] == "ended"],
        20, what="a second broadcast to end",
    )  # fmt: skip
    status, _, body = server.get(f"/replays/{broadcasts[0]['id']}/index.m3u8")
    assert status == 200
    replay = parse_media_playlist(body.decode())
    assert SECONDS - 0.15 <= sum(s.duration for s in replay.segments) <= SECONDS + 0.15
    assert server.get_json(f"/api/broadcasts/{first['id']}")["status"] != "live"
