"""EdgeMirror's queue when Redis falls behind: bounded, nothing listed lost, the update being
written left alone. (Writing to a real Redis is tested end to end in tests/e2e/test_cluster.py.)"""

from __future__ import annotations

import asyncio
from collections import deque

from periscope_ingest.config_services import ClusterSettings
from periscope_ingest.live.edge_mirror import EdgeMirror
from periscope_ingest.live.segment_commands import PlaylistUpdate


def update(n: int) -> PlaylistUpdate:
    return PlaylistUpdate(
        next_sequence=n,
        parts=0,
        ended=False,
        target_duration_s=2,
        text=f"playlist {n}",
        media=((f"{n:06d}.ts", bytes([n % 256]) * 10),),
    )


def test_a_backlog_merges_into_the_newest_keeping_every_file_and_the_head() -> None:
    async def run() -> None:
        settings = ClusterSettings(redis_url="redis://127.0.0.1:1/0", max_pending=4)
        mirror = EdgeMirror(None, "n1", settings, None)  # type: ignore[arg-type]
        edge = object()
        mirror._queues[edge] = queue = deque()
        mirror._wake[edge] = asyncio.Event()
        for n in range(20):
            mirror._updated(edge, update(n))  # type: ignore[arg-type]
        assert len(queue) == 4
        assert queue[0].text == "playlist 0"  # being written: as it was
        assert queue[-1].text == "playlist 19"
        names = [name for item in queue for name, _ in item.media]
        assert names == [f"{n:06d}.ts" for n in range(20)]

    asyncio.run(run())


def test_the_files_a_playlist_lists_are_segments_parts_and_init_segments_not_the_hint() -> None:
    from periscope_ingest.live.edge_mirror import _listed_files

    text = "\n".join(
        [
            "#EXTM3U",
            '#EXT-X-MAP:URI="b1/init-0.mp4"',
            "#EXTINF:2.0,",
            "b1/000004.m4s",
            '#EXT-X-PART:DURATION=0.3,URI="b1/000005.0.m4s",INDEPENDENT=YES',
            '#EXT-X-PART:DURATION=0.3,URI="b1/000005.1.m4s"',
            '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="b1/000005.2.m4s"',
            '#EXT-X-RENDITION-REPORT:URI="../other/index.m3u8",LAST-MSN=3',
        ]
    )
    assert _listed_files(text) == {"init-0.mp4", "000004.m4s", "000005.0.m4s", "000005.1.m4s"}
