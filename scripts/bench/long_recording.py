"""The recording playlist of a long broadcast: what each new segment costs to list, by length.

    .venv/bin/python scripts/bench/long_recording.py [--entries 15,1800,5400,21600] [--segments 40]

A live broadcast's recording.m3u8 (EVENT) gains an entry per segment. For a recording already
--entries long (1800 = one hour of 2 s segments), this lists --segments more, two ways, taking
turns segment by segment in one process so the machine's noise falls on both:

* rewrite: render the whole playlist and replace the file atomically and durably (write_atomic),
  how the server kept it until the tenth set of docs/benchmarks.md;
* append: render the new entry only and append it durably (GrowingFile + render_appended), how
  it keeps it now.

Per segment: CPU of this thread (render + write + sync), bytes handed to write(2)
(/proc/self/io wchar) and wall time (which includes waiting for the disk). The files live in
--dir (default: a temporary directory beside the data, on the same disk as /tmp).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import markdown_table, r

from periscope_ingest.media.playlist import LivePlaylist, Segment
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.growing_file import GrowingFile

SEGMENT_MS = 2000
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def listed_segment(sequence: int) -> Segment:
    """Entry ``sequence`` of a benchmark recording: 2 s segments from T0."""
    return Segment(
        sequence=sequence,
        uri=f"{sequence:06d}.ts",
        duration_ms=SEGMENT_MS,
        program_date_time=T0 + timedelta(milliseconds=SEGMENT_MS * sequence),
    )


def _written_bytes() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))


def recording_of(entries: int) -> LivePlaylist:
    """A live recording's (EVENT) playlist ``entries`` long."""
    playlist = LivePlaylist(2, 0, "EVENT")
    for sequence in range(entries):
        playlist.append(listed_segment(sequence))
    return playlist


def measure(entries: int, segments: int, directory: Path) -> dict:
    rewritten, appended = recording_of(entries), recording_of(entries)
    rewrite_path, append_path = directory / "rewrite.m3u8", directory / "append.m3u8"
    write_atomic(rewrite_path, rewritten.render().encode())
    growing = GrowingFile(append_path)
    growing.replace(appended.render().encode())

    def rewrite() -> None:
        write_atomic(rewrite_path, rewritten.render().encode())

    def append() -> None:
        text = appended.render_appended()
        assert text is not None
        growing.append(text.encode())

    samples: dict[str, list[tuple[float, int, float]]] = {"rewrite": [], "append": []}
    for step in range(segments):
        sequence = entries + step
        rewritten.append(listed_segment(sequence))
        appended.append(listed_segment(sequence))
        order = [("rewrite", rewrite), ("append", append)]
        for name, write in order if step % 2 == 0 else order[::-1]:
            cpu, wall, written = time.thread_time(), time.perf_counter(), _written_bytes()
            write()
            samples[name].append(
                (time.thread_time() - cpu, _written_bytes() - written, time.perf_counter() - wall)
            )
    growing.close()
    assert append_path.read_bytes() == rewrite_path.read_bytes()  # the same playlist
    row: dict = {"entries": entries, "hours": r(entries * SEGMENT_MS / 3_600_000, 2)}
    for name, values in samples.items():
        row[f"{name}_cpu_ms"] = r(statistics.median(v[0] for v in values) * 1000)
        row[f"{name}_bytes"] = int(statistics.median(v[1] for v in values))
        row[f"{name}_wall_ms"] = r(statistics.median(v[2] for v in values) * 1000)
    row["cpu_append_over_rewrite"] = r(row["append_cpu_ms"] / row["rewrite_cpu_ms"], 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", default="15,1800,5400,21600")
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    entries = [int(n) for n in args.entries.split(",")]
    if any(n < 0 for n in entries) or not 1 <= args.segments <= 10_000:
        parser.error("--entries must be >= 0, --segments in [1, 10000]")
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        rows = [measure(n, args.segments, Path(directory)) for n in entries]
    headers = ["entries", "hours", "rewrite CPU ms", "append CPU ms", "append / rewrite"]
    headers += ["rewrite bytes", "append bytes", "rewrite wall ms", "append wall ms"]
    keys = ["entries", "hours", "rewrite_cpu_ms", "append_cpu_ms", "cpu_append_over_rewrite"]
    keys += ["rewrite_bytes", "append_bytes", "rewrite_wall_ms", "append_wall_ms"]
    print(f"\n## long recording: per segment listed, median of {args.segments}\n")
    print(markdown_table(headers, [[row[k] for k in keys] for row in rows], digits=3))
    if args.json is not None:
        args.json.write_text(json.dumps({"segments": args.segments, "rows": rows}, indent=1))
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
