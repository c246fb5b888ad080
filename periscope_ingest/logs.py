"""Structured logs: one event per line with its fields, never a secret.

On a terminal a line reads ``2026-11-25T19:10:46 INFO periscope_ingest.live event key=value``;
elsewhere (journald, Docker, files) each line is one JSON object
``{"time": ..., "level": ..., "logger": ..., "event": ..., "key": value}`` for log pipelines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_FIELDS = "periscope_fields"


def _format_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    if logger.isEnabledFor(level):
        present = {k: v for k, v in fields.items() if v is not None}
        parts = [event, *(f"{k}={_format_value(v)}" for k, v in present.items())]
        logger.log(level, " ".join(parts), extra={_FIELDS: (event, present)})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event, fields = getattr(record, _FIELDS, (None, {}))
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if event is not None:
            entry["event"] = event
            for key, value in fields.items():
                entry.setdefault(
                    key, value if isinstance(value, int | float | bool) else str(value)
                )
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, log_format: str = "auto") -> None:
    """``log_format``: "text", "json", or "auto" (text on a terminal, JSON otherwise)."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
