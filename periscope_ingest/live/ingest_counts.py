"""One stream's ingest counters in /metrics (bytes and messages), added up in batches.

Four locked increments of the prometheus counters per message were 4 % of the ingest CPU: the
counts are kept here and added to the metrics every COUNT_FLUSH_MESSAGES messages and whenever
a segment closes (so a listed segment's bytes are counted by the time it is listed).
"""

from __future__ import annotations

from periscope_ingest.metrics import Metrics

COUNT_FLUSH_MESSAGES = 200  # about 2.5 s of a 30 fps stream with audio


class IngestCounts:
    __slots__ = ("_all_bytes", "_all_messages", "_bytes", "_messages", "_size", "_uncounted")

    def __init__(self, channel: str, metrics: Metrics | None) -> None:
        # Children looked up once: a labelled lookup per message would cost more than parsing it.
        self._bytes = metrics.ingest_bytes.labels(channel) if metrics else None
        self._messages = metrics.ingest_messages.labels(channel) if metrics else None
        self._all_bytes = metrics.ingest_bytes_all if metrics else None
        self._all_messages = metrics.ingest_messages_all if metrics else None
        self._uncounted = 0  # messages
        self._size = 0  # their bytes

    def add(self, size: int) -> None:
        self._size += size
        self._uncounted += 1
        if self._uncounted >= COUNT_FLUSH_MESSAGES:
            self.flush()

    def flush(self) -> None:
        if self._bytes is not None and self._messages is not None:
            self._bytes.inc(self._size)
            self._messages.inc(self._uncounted)
            assert self._all_bytes is not None and self._all_messages is not None
            self._all_bytes.inc(self._size)
            self._all_messages.inc(self._uncounted)
        self._size = self._uncounted = 0
