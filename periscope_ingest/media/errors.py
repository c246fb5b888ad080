"""Error messages a user can read.

PyAV raises FFmpeg's errors as OSError subclasses whose errno is FFmpeg's own code, a negated
four-letter tag: "[Errno 541478725] End of file" says nothing to a user and looks like a system
error number. Messages keep the text FFmpeg (or the system) gives and the file it concerns.
"""

from __future__ import annotations


def error_text(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    if not strerror:
        return str(exc)
    filename = getattr(exc, "filename", None)
    return f"{strerror}: {filename}" if filename else str(strerror)
