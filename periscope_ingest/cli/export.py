"""``export``: a broadcast, a clip of one, or every finished broadcast of a channel written
as MP4 files, from the data directory alone.

Only the data directory is read (config_file.data_dir_setting), not the settings models: PyAV
is heavy enough for this command's peak memory (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.cli.catalog import open_catalog
from periscope_ingest.cli.errors import CliError, UsageError

if TYPE_CHECKING:
    from periscope_ingest.config_services import CatalogSettings


class _Progress:
    """A one-line progress report on a terminal; silent when output is redirected."""

    def __init__(self, label: str, total_bytes: int) -> None:
        self.label = label
        self.total = max(1, total_bytes)
        self.done = 0
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self._last > 0.1:
            self._last = now
            share = min(1.0, self.done / self.total)
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r{self.label} [{bar:30}] {share:4.0%}")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write(f"\r{self.label} [{'#' * 30}] 100%\n")


def _export_one(layout, record, output: Path, start=None, end=None) -> int:
    from periscope_ingest.media.export import ExportError, export_mp4, stream_mp4
    from periscope_ingest.storage.atomic import partial_path, publish_partial
    from periscope_ingest.storage.layout import init_segments
    from periscope_ingest.storage.recordings import recording_segments

    segments = recording_segments(layout, record)
    if not segments:
        raise CliError(f"broadcast {record.id} has no recorded media")
    inits = init_segments(segments)
    temporary = partial_path(output)  # hidden until complete, then renamed into place
    try:
        if start is not None or end is not None:
            # A clip exact to a frame needs an edit list: a complete (faststart) MP4.
            export_mp4(segments, temporary, start=start, end=end, inits=inits)
        else:
            progress = _Progress(
                f"{record.id} {record.channel}", sum(p.stat().st_size for p in segments)
            )
            with open(temporary, "wb") as f:

                def write(data: bytes) -> None:
                    f.write(data)
                    progress.add(len(data))

                stream_mp4(segments, write, inits=inits)
            progress.finish()
        publish_partial(output)
    except ExportError as exc:
        raise CliError(f"cannot export {record.id}: {exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return output.stat().st_size


def export(
    data_dir: Path, args: argparse.Namespace, catalog_settings: CatalogSettings | None = None
) -> int:
    from periscope_ingest.storage.recordings import export_path

    target = args.output if args.channel is not None or not args.output.is_dir() else None
    if target is not None and not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: directory {target.parent} does not exist")
    layout, catalog = open_catalog(data_dir, catalog_settings)
    if (args.broadcast is None) == (args.channel is None):
        raise CliError("name a broadcast id, or --channel NAME (not both)")
    if args.broadcast is not None:
        record = catalog.get(args.broadcast)
        if record is None or record.status == "deleted":
            raise CliError(f"no broadcast {args.broadcast}")
        output = args.output
        if output.is_dir():
            output = export_path(output, record)
        size = _export_one(layout, record, output, args.start, args.end)
        print(f"{output} ({size} bytes)")
        return 0
    if args.start is not None or args.end is not None:
        raise CliError("--start/--end apply to one broadcast, not a channel")
    records = [
        r
        for r in catalog.all()
        if r.channel == args.channel and r.status in ("ended", "interrupted") and r.segments
    ]
    if not records:
        raise CliError(f"channel {args.channel} has no finished broadcasts")
    args.output.mkdir(parents=True, exist_ok=True)
    for record in records:
        output = export_path(args.output, record, with_id=True)
        size = _export_one(layout, record, output)
        print(f"{output} ({size} bytes)")
    return 0
