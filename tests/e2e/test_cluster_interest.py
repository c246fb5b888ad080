"""A stream's media is mirrored into Redis only while another node has viewers of it.

Two real nodes on a real Redis (as in test_cluster.py), LL-HLS with fMP4. ffmpeg pushes to A.
Until B is asked for the stream, Redis holds its short state but no playlist text and no media.
B's first playlist request marks B's interest and waits for A to mirror: every file that first
playlist lists is then fetchable from B with A's bytes (RFC 8216 6.2.2), and a blocking reload
on B wakes with the next part. Once B's viewers stop asking, the interest key expires and A
stops writing media: no newer segment or part appears in Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from periscope_ingest.live.cluster_keys import interest_key, live_key
from periscope_ingest.storage.layout import parse_part_name, parse_segment_name
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.test_cluster import listed, node, push

pytestmark = pytest.mark.e2e

INTEREST_TTL_S = 3
CHANNEL = "interest"


def media_sequences(redis: Redis) -> set[int]:
    """The segment numbers of the channel's segments and parts held in Redis now."""
    found = set()
    for key in redis.scan_iter(match=f"periscope:media:{CHANNEL}:*", count=500):
        name = key.decode().rsplit(":", 1)[-1]
        part = parse_part_name(name)
        sequence = part[0] if part is not None else parse_segment_name(name)
        if sequence is not None:
            found.add(sequence)
    return found


def listed_uris(text: str) -> list[str]:
    """Every segment, part and init segment URI a media playlist lists (no preload hint)."""
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in text.splitlines():
        if line.startswith(("#EXT-X-PART:", "#EXT-X-MAP:")):
            uris.append(line.split('URI="', 1)[1].split('"', 1)[0])
    return uris


def test_media_is_mirrored_only_while_another_node_watches(tmp_path: Path, redis) -> None:
    settings = {
        "PERISCOPE_HLS__LOW_LATENCY": "true",
        "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
        "PERISCOPE_CLUSTER__INTEREST_TTL": str(INTEREST_TTL_S),
    }
    a = node(tmp_path, "ia", redis, **settings)
    b = node(tmp_path, "ib", redis, **settings)
    client = Redis.from_url(redis.url, socket_timeout=5)
    pusher = push(a, CHANNEL, 40)
    try:
        # Nobody on B yet: A writes the stream's state (B lists it), not its playlist or media.
        a.wait_for(
            lambda: (p := listed(a, CHANNEL)) and len(p[1].segments) >= 3, 30, what="3 segments"
        )
        state = client.hgetall(live_key(CHANNEL))
        assert state[b"node"] == b"ia" and state[b"mirrored"] == b"0"
        assert b"text" not in state
        assert media_sequences(client) == set()
        assert not client.exists(interest_key(CHANNEL))
        on_b = b.get_json("/api/streams")["streams"]
        assert [s["channel"] for s in on_b] == [CHANNEL]

        # B's first playlist: held until A mirrors, then every file it lists is there.
        status, _, body = b.get(f"/live/{CHANNEL}/index.m3u8")
        assert status == 200, body
        text = body.decode()
        first = parse_media_playlist(text)
        assert len(first.segments) >= 3
        uris = listed_uris(text)
        assert any(parse_part_name(uri.rsplit("/", 1)[-1]) for uri in uris), text
        for uri in uris:
            status_b, _, data_b = b.get(f"/live/{CHANNEL}/{uri}")
            assert status_b == 200, uri
            assert data_b == a.get(f"/live/{CHANNEL}/{uri}")[2], uri
        assert client.hget(live_key(CHANNEL), "mirrored") == b"1"
        assert client.get(interest_key(CHANNEL)) == b"ib"

        # LL-HLS: a blocking reload on B for the next segment's first part wakes with it.
        msn = first.media_sequence + len(first.segments) + 1
        status, _, body = b.get(f"/live/{CHANNEL}/index.m3u8?_HLS_msn={msn}&_HLS_part=0")
        assert status == 200, body
        newer = parse_media_playlist(body.decode())
        assert newer.media_sequence + len(newer.segments) >= msn
        assert any(
            parse_part_name(uri.rsplit("/", 1)[-1]) == (msn, 0)
            for uri in listed_uris(body.decode())
        ), body.decode()

        # B's viewer leaves: once the interest has expired, A stops mirroring.
        b.wait_for(
            lambda: (
                not client.exists(interest_key(CHANNEL))
                and client.hget(live_key(CHANNEL), "mirrored") == b"0"
            ),
            INTEREST_TTL_S + 15,
            what="the interest to expire and A to stop mirroring",
        )
        mirrored_up_to = max(media_sequences(client))
        stopped_at = client.hget(live_key(CHANNEL), "next_sequence")
        a.wait_for(
            lambda: int(client.hget(live_key(CHANNEL), "next_sequence")) >= int(stopped_at) + 2,
            20,
            what="two more segments on A",
        )
        assert max(media_sequences(client)) == mirrored_up_to
        assert client.hget(live_key(CHANNEL), "mirrored") == b"0"
    finally:
        pusher.kill()
        pusher.wait()
        client.close()
        a.stop()
        b.stop()
