"""StreamAssembler on a real encoder's tags with the timestamp faults encoders produce."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from periscope_ingest.media.ingest import Placed, StreamAssembler
from tests.e2e.pushers import push_pyav
from tests.flv_file import read_tags


@pytest.fixture(scope="module")
def audio_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ingest") / "audio.flv"
    push_pyav(str(path), 3, video=False, realtime=False)
    return path


def audio_packets(tags) -> list:
    assembler = StreamAssembler(start_buffer_ms=100)
    out = []
    for kind, timestamp, body in tags:
        if kind == 8:
            out += assembler.audio_message(timestamp, body)
    out += assembler.flush()
    return [o.packet for o in out if isinstance(o, Placed)]


@pytest.mark.parametrize("step_ms", [-150, -40, 300])
def test_audio_never_overlaps_after_the_encoder_clock_steps(audio_flv: Path, step_ms: int):
    # A looped file (ffmpeg -stream_loop -c copy) or a glitching encoder: from 1 s on, the
    # timestamps step back or forward. Overlapping AAC frames made the muxer refuse packets.
    tags = [(k, t if t < 1000 else t + step_ms, b) for k, t, b in read_tags(audio_flv)]
    packets = audio_packets(tags)
    assert len(packets) > 100
    for before, after in itertools.pairwise(packets):
        assert after.pts >= before.pts + before.duration, (before.pts, after.pts)
    # Within a stretch the clock is the sample count: 1024 samples at 48 kHz = 1920 ticks.
    assert packets[1].pts - packets[0].pts == 1920
