"""Export benchmark: not written yet.

It comes when the archive export endpoint exists in the server. Planned, in the style of the
other scripts (see docs/benchmarks.md): record a broadcast of --minutes with ffmpeg -re (or
reuse one), then time the MP4 export over HTTP (time to first byte, total time, MB/s, server CPU
and PSS peak) for faststart MP4 and streamed fragmented MP4, next to the same file exported by
`ffmpeg -i recording.m3u8 -c copy` in the same run as the reference (nginx-rtmp has no export).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    print(__doc__, file=sys.stderr)
    sys.exit(2)
