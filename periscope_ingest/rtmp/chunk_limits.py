"""How the chunk reader names the limits a client went over.

Errors are raised at a chunk's header, before any byte of the message is kept; each one names the
setting an operator would change (LimitNames), so the log line says which limit the client hit.
Only the rare error paths of the per-chunk loop call these.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitExceeded

__all__ = [
    "LimitNames",
    "command_too_large",
    "message_too_large",
    "too_many_chunk_streams",
    "too_much_in_progress",
]


@dataclass(frozen=True, slots=True)
class LimitNames:
    """How LimitExceeded errors name the limits in force: after the setting an operator would
    change, so that the log line says which one the client hit."""

    message_size: str = "max_message_size"
    chunk_streams: str = "max_chunk_streams"
    buffered: str = "max_buffered"
    when: str = ""  # appended to the error, e.g. " (before a publish is accepted)"


def too_many_chunk_streams(
    names: LimitNames, csid: int, open_streams: int, limit: int
) -> LimitExceeded:
    return LimitExceeded(
        f"chunk stream {csid} would be chunk stream number "
        f"{open_streams + 1}, exceeding"
        f" {names.chunk_streams}={limit}{names.when}"
    )


def message_too_large(names: LimitNames, csid: int, length: int, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"chunk stream {csid}: message of {length} bytes exceeds"
        f" {names.message_size}={limit}{names.when}"
    )


def command_too_large(csid: int, type_id: int, length: int, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"chunk stream {csid}: message of type {type_id} and {length} bytes"
        f" exceeds max_command_size={limit} (only audio and"
        " video may be larger)"
    )


def too_much_in_progress(
    names: LimitNames, csid: int, length: int, in_progress: int, limit: int
) -> LimitExceeded:
    return LimitExceeded(
        f"chunk stream {csid}: a message of {length} bytes would make"
        f" {in_progress} bytes of messages in progress, exceeding"
        f" {names.buffered}={limit}{names.when}"
    )
