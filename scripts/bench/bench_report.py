"""Playlist parsing and reporting for the benches: percentiles, tables, results files."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    sequence: int
    uri: str
    duration: float


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    target_duration: float
    media_sequence: int
    segments: tuple[PlaylistEntry, ...]
    ended: bool


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Just what the benches need from an RFC 8216 media playlist."""
    target = 0.0
    sequence = 0
    ended = False
    entries: list[PlaylistEntry] = []
    duration: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif not line.startswith("#"):
            entries.append(PlaylistEntry(sequence + len(entries), line, duration or 0.0))
            duration = None
    return MediaPlaylist(target, sequence, tuple(entries), ended)


# ---------------------------------------------------------------------------------- stats


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[object]], digits: int = 1) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# A column of a results table: its header, and the run's field shown in it (a key of the run's
# dict, or a function of the run for a figure shown differently from how it is stored).
Column = tuple[str, str | Callable[[dict], object]]


def results_table(columns: list[Column], runs: list[dict], digits: int = 1) -> str:
    """A markdown table with one row per run: the benches list their columns, not their rows."""
    rows = [[value(x) if callable(value) else x[value] for _, value in columns] for x in runs]
    return markdown_table([header for header, _ in columns], rows, digits)


def ms(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds, for tables."""
    return None if seconds is None else round(seconds * 1000)


def write_results(path: Path, bench: str, data: dict) -> None:
    """A benchmark's JSON file: its name and when it ran, then what it measured."""
    write_json(path, {"bench": bench, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data})


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"\nresults written to {path}")


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    print(f"... {message}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    yield
    print(f"    done in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
