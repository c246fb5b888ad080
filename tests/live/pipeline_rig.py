"""A StreamPipeline on a temp data directory, fed FLV tags the way an RTMP session feeds it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from periscope_ingest.config_sections import HlsSettings
from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.rtmp import amf0
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout, new_broadcast_id

CHANNEL = "chan"
VIDEO_TAG, AUDIO_TAG, SCRIPT_TAG = 9, 8, 18  # FLV tag types


def make_pipeline(
    tmp_path: Path, read_interval_s: float = 0.0, **hls
) -> tuple[StreamPipeline, DataLayout]:
    """A new broadcast of CHANNEL under tmp_path/data, on the running loop; ``hls`` are
    HlsSettings fields (the rest keep their defaults). tmp_path may be a new sub-directory of
    the test's own (two pipelines in one test): it is created, as the data directory's parent
    must exist."""
    tmp_path.mkdir(exist_ok=True)
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    pipeline = StreamPipeline(
        CHANNEL,
        new_broadcast_id(),
        layout,
        HlsSettings(**hls),
        asyncio.get_running_loop(),
        Catalog(layout.catalog_path),
        read_interval_s=read_interval_s,
    )
    return pipeline, layout


def feed(pipeline: StreamPipeline, tag: tuple[int, int, bytes]) -> None:
    """One (tag type, timestamp ms, body) from tests.flv_file.read_tags: video, audio or
    onMetaData (the only data message the RTMP session hands on); other tag types are dropped."""
    tag_type, timestamp, body = tag
    if tag_type == VIDEO_TAG:
        pipeline.video(timestamp, body)
    elif tag_type == AUDIO_TAG:
        pipeline.audio(timestamp, body)
    elif tag_type == SCRIPT_TAG:
        name, values = amf0.decode_all(body)[:2]
        assert name == "onMetaData", name
        pipeline.metadata(dict(values))


async def feed_all_and_finish(
    pipeline: StreamPipeline, tags: Iterable[tuple[int, int, bytes]]
) -> None:
    """Every tag, then the end of the publish: the recording and live playlists are final when
    this returns."""
    for tag in tags:
        feed(pipeline, tag)
    await pipeline.finish()
