"""What a publish's StreamTemplates keep resident (#17: memory per stream).

An open FLV demuxer holds about 2 MiB of zeroed context; templates live for a whole publish, so
keeping it open cost every stream that much. This counts the process's resident anonymous memory
while many templates are alive: about 2.2 MiB each with the demuxer kept open, about 50 KiB
each without it.
"""

from __future__ import annotations

from periscope_ingest.media.muxer import StreamTemplates

# A real 1280x720 High profile avcC (SPS + PPS) and AAC-LC 48 kHz stereo.
AVCC = bytes.fromhex(
    "01640028ffe1001b67640028acd940780227e5c04400000303040000030f03c60c658001000568ebecb22c"
)
ASC = bytes.fromhex("1190")
TEMPLATES = 20


def _resident_anonymous_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def test_live_templates_keep_no_demuxer_resident() -> None:
    StreamTemplates(AVCC, ASC).close()  # FFmpeg's one-time allocations are not counted
    before = _resident_anonymous_kib()
    alive = [StreamTemplates(AVCC, ASC) for _ in range(TEMPLATES)]
    try:
        grown = _resident_anonymous_kib() - before
        # With the demuxer open: about 44 MiB for 20. The bound leaves room for allocator noise.
        assert grown < TEMPLATES * 512, f"{grown} KiB resident for {TEMPLATES} templates"
        for templates in alive:
            assert templates.video is not None and templates.audio is not None
            assert templates.video.codec_context.extradata == AVCC
            assert templates.audio.codec_context.extradata == ASC
    finally:
        for templates in alive:
            templates.close()
