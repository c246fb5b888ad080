"""A long broadcast's recording playlist going to the object store: what each segment costs.

    .venv/bin/python scripts/bench/store_uploads.py [--entries 1800,5400,21600] [--segments 100]
        [--speedup 10]

For a recording already --entries long (5400 = three hours of 2 s segments), the real uploader
(live/uploader.py) and S3 client (storage/s3_store.py) send --segments more to moto's S3
server (started here, store_node.py), two ways, one after the other:

* whole: the playlist put whole after every segment (storage.recording_playlist_kib_s huge), how
  the server sent it until the eleventh set of docs/benchmarks.md;
* tail: --kib-s (default 32 KiB/s, the setting's default): whole when due, else its new lines
  as recording.tail.

Segments are listed --speedup times faster than real time (every 2 s / speedup) and the rate is
scaled by the same factor, so that the whole uploads come as often, in segments, as they would
at real speed. Per segment listed: bytes and requests of playlist uploads, and CPU of this
process (the uploader thread, the S3 client's threads, the listing itself; moto is another
process). Every segment's file is 1 KiB: the figures are the playlist's, not the video's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import store_node
from common import markdown_table, r
from long_recording import SEGMENT_MS, listed_segment, recording_of

from periscope_ingest.config_services import StorageSettings
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.storage.growing_file import GrowingFile
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.objects import ObjectStore, open_store
from periscope_ingest.storage.recording_tail import read_recording_playlist


class CountingStore(ObjectStore):
    """The S3 store, counting what goes up as playlists (whole or tail)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.playlist_bytes = 0
        self.playlist_puts = 0

    def _count(self, key: str, size: int) -> None:
        if key.endswith(("recording.m3u8", "recording.tail")):
            with self._lock:
                self.playlist_bytes += size
                self.playlist_puts += 1

    def put_file(self, key: str, path: Path) -> None:
        self._count(key, path.stat().st_size)
        self._store.put_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._count(key, len(data))
        self._store.put_bytes(key, data)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._store.get_range(key, start, end)

    def get_bytes(self, key: str) -> bytes:
        return self._store.get_bytes(key)

    def download(self, key: str, path: Path) -> int:
        return self._store.download(key, path)

    def size(self, key: str) -> int | None:
        return self._store.size(key)

    def list(self, prefix: str) -> dict[str, int]:
        return self._store.list(prefix)

    def delete(self, key: str) -> None:
        self._store.delete(key)


def _drain(uploader: Uploader) -> None:
    while uploader.queued():
        time.sleep(0.002)


def measure(
    mode: str, entries: int, segments: int, speedup: float, kib_s: float, moto, work: Path
) -> dict:
    kib_s = 1e6 if mode == "whole" else kib_s * speedup
    layout = DataLayout(work / mode / str(entries))
    broadcast = f"bench{entries:07d}"[:12]
    directory = layout.broadcast_dir("chan", broadcast)
    directory.mkdir(parents=True)
    s3 = open_store(f"s3://{store_node.BUCKET}/{mode}{entries}", layout.root, moto.endpoint, 30)
    store = CountingStore(s3)
    uploader = Uploader(store, layout, StorageSettings(recording_playlist_kib_s=kib_s))
    playlist = recording_of(entries)
    growing = GrowingFile(directory / "recording.m3u8")
    growing.replace(playlist.render().encode())
    uploader.file_complete(growing.path)
    _drain(uploader)
    store.playlist_bytes = store.playlist_puts = 0
    interval = SEGMENT_MS / 1000 / speedup
    cpu, started = time.process_time(), time.monotonic()
    for step in range(segments):
        sequence = entries + step
        segment = directory / f"{sequence:06d}.ts"
        segment.write_bytes(b"\x47" * 1024)
        uploader.file_complete(segment)
        playlist.append(listed_segment(sequence))
        appended = playlist.render_appended()
        assert appended is not None
        growing.append(appended.encode())
        uploader.file_complete(growing.path)
        _drain(uploader)
        time.sleep(max(0.0, started + (step + 1) * interval - time.monotonic()))
    cpu = time.process_time() - cpu
    key = layout.key_for(growing.path)
    # What the store lists now is the whole recording, whichever way it went up.
    assert read_recording_playlist(s3, key) == growing.path.read_bytes()
    growing.close()
    uploader.stop(30)
    return {
        "mode": mode,
        "entries": entries,
        "hours": r(entries * SEGMENT_MS / 3_600_000, 2),
        "playlist_bytes_per_segment": round(store.playlist_bytes / segments),
        "playlist_puts_per_segment": r(store.playlist_puts / segments, 2),
        "cpu_ms_per_segment": r(cpu / segments * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", default="1800,5400,21600")
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument(
        "--kib-s", type=float, default=32.0, help="storage.recording_playlist_kib_s (tail mode)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    entries = [int(n) for n in args.entries.split(",")]
    if any(n < 1 for n in entries) or not 1 <= args.segments <= 10_000:
        parser.error("--entries must be >= 1, --segments in [1, 10000]")
    if not 1 <= args.speedup <= 100 or args.kib_s <= 0:
        parser.error("--speedup in [1, 100], --kib-s > 0")
    rows = []
    # The S3 client reads its credentials from the environment, as the server's does.
    os.environ.update(
        AWS_ACCESS_KEY_ID=store_node.ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=store_node.SECRET_KEY,
        AWS_REGION=store_node.REGION,
    )
    with (
        tempfile.TemporaryDirectory() as work,
        store_node.MotoStore(Path(work) / "moto.log") as moto,
    ):
        for n in entries:
            for mode in ("whole", "tail"):
                rows.append(
                    measure(mode, n, args.segments, args.speedup, args.kib_s, moto, Path(work))
                )
    by = {(row["mode"], row["entries"]): row for row in rows}
    table = []
    for n in entries:
        whole, tail = by["whole", n], by["tail", n]
        table.append(
            [
                n,
                whole["hours"],
                whole["playlist_bytes_per_segment"],
                tail["playlist_bytes_per_segment"],
                tail["playlist_puts_per_segment"],
                whole["cpu_ms_per_segment"],
                tail["cpu_ms_per_segment"],
                r(tail["cpu_ms_per_segment"] / whole["cpu_ms_per_segment"], 3),
            ]
        )
    headers = ["entries", "hours", "whole: bytes up", "tail: bytes up", "tail: PUTs"]
    headers += ["whole: CPU ms", "tail: CPU ms", "tail / whole CPU"]
    print(f"\n## recording playlist uploads: per segment listed, {args.segments} segments\n")
    print(markdown_table(headers, table, digits=3))
    if args.json is not None:
        payload = {
            "segments": args.segments,
            "speedup": args.speedup,
            "kib_s": args.kib_s,
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
