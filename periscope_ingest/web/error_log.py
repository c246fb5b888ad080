"""What aiohttp's server says about a request it could not handle, as one log line.

aiohttp logs a malformed request with its traceback and the offending bytes quoted, which may be
an Authorization header or anything else a client chose to send: logs would carry secrets and
attacker-chosen text, several lines per bad request. Passed to aiohttp as its logger, this
keeps one structured line per request naming the client and the kind of problem, and a
traceback only for our own faults (a handler raising), where it is what a developer needs.
"""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError

from periscope_ingest.logs import log_event

log = logging.getLogger("periscope_ingest.web.http")

# Only these characters of the reason aiohttp's parser gives are kept (its own fixed phrases).
_REASON_CHARS = 60


def _reason(exc: HttpProcessingError) -> str:
    """The class of the problem, and for the C parser's BadHttpMessage its fixed phrase (the
    first line of its message: what follows quotes the request)."""
    if type(exc) is BadHttpMessage and exc.message:
        phrase = exc.message.strip().splitlines()[0].rstrip(":")
        if phrase.isascii() and phrase.isprintable():
            return phrase[:_REASON_CHARS]
    return type(exc).__name__


class RequestErrorLog:
    """The part of logging.Logger that aiohttp's RequestHandler uses."""

    def isEnabledFor(self, level: int) -> bool:
        return log.isEnabledFor(level)

    def debug(self, msg: str, *args: object, exc_info: object = None, **_: object) -> None:
        self._report(logging.DEBUG, msg, args, exc_info)

    def exception(self, msg: str, *args: object, exc_info: object = True, **_: object) -> None:
        self._report(logging.WARNING, msg, args, exc_info)

    error = exception

    def warning(self, msg: str, *args: object, **_: object) -> None:
        self._report(logging.WARNING, msg, args, None)

    def _report(self, level: int, msg: str, args: tuple, exc_info: object) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if exc is None and exc_info is True:
            exc = sys.exc_info()[1]
        client = args[0] if args and msg.endswith("from %s") else None
        if isinstance(exc, HttpProcessingError):
            log_event(log, level, "http_bad_request", client=client, reason=_reason(exc))
        elif exc is not None:
            # Not the client's fault: a bug of ours, with what a developer needs to fix it.
            log.log(
                max(level, logging.ERROR), "http_handler_failed client=%s", client, exc_info=exc
            )
        elif log.isEnabledFor(level):
            log_event(log, level, "http_server", note=msg.split("%", 1)[0].strip()[:80])
