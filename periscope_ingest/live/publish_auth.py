"""Publish authorisation by HTTP callback (auth.publish_url).

Operators of nginx-rtmp (on_publish), SRS (http_hooks) and MediaMTX (authHTTPAddress) decide
who may publish in their own service: the server POSTs what it knows of the publish and follows
the answer. Here, after the built-in checks (with accounts, a known key):

    POST publish_url  {"action": "publish", "app": "live", "key": "...", "channel": "...",
                       "client": "203.0.113.7", "query": "token=..."}

"query" joins what followed "?" in the app and in the stream name. "channel" is what the
built-in rules give (the account's handle, or the key itself with open publishing), or null for
an open-publishing key that is not a channel name: the callback must then name one.

A 2xx answer allows the publish; a JSON object in its body may name the channel to publish on
({"channel": "alice"}; other bodies are ignored). Anything else, redirects included, refuses
it with NetStream.Publish.BadName, and the log says why (the status, never the key). A callback
that cannot be reached, times out or answers garbage follows auth.on_failure (refuse by default).

Anyone can ask to publish, so the checks are bounded before authorisation: at most
auth.max_concurrent in flight (a publish beyond is refused at once), auth.timeout each, and at
most auth.max_answer_bytes of each answer read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import aiohttp

from periscope_ingest.config_sections import AuthSettings
from periscope_ingest.logs import log_event
from periscope_ingest.storage.layout import is_channel_name

log = logging.getLogger(__name__)

NOT_A_CHANNEL = (
    "the stream key is not a channel name (1-64 letters, digits, '-' or '_')"
    " and the publish check named no channel"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    refusal: str | None  # None: allowed; else why not, for the log and the refusal
    channel: str | None  # where to publish; on a refusal, what the log may show (never the key)


class PublishCallback:
    def __init__(self, settings: AuthSettings) -> None:
        assert settings.publish_url is not None
        self._settings = settings
        self._url = settings.publish_url
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0
        self._closed = False  # the service stops: no more checks

    def _shared_session(self) -> aiohttp.ClientSession:
        """One session for every check, made at the first (so a start that fails on a busy
        port leaves no session open), its connections bounded like the checks."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
                connector=aiohttp.TCPConnector(limit=self._settings.max_concurrent),
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def decide(
        self, *, app: str, key: str, channel: str | None, client: str, query: str
    ) -> Verdict:
        """Ask the callback about a publish that passed the built-in checks; ``channel`` is
        where those would put it (None: the key is no channel name, the callback must name
        one)."""
        # With open publishing the channel is the key, which a refusal's log must not show.
        shown = channel if channel != key else None
        limit = self._settings.max_concurrent
        if self._closed:
            return Verdict("the server is stopping", shown)
        if self._in_flight >= limit:
            return Verdict(
                f"too many publish checks in progress (auth.max_concurrent={limit})", shown
            )
        session = self._shared_session()
        body: dict[str, object] = {
            "action": "publish",
            "app": app,
            "channel": channel,
            "client": client,
            "query": query,
        }
        if self._settings.send_key:
            body["key"] = key
        self._in_flight += 1
        try:
            # A redirect is an answer like any other that is not a 2xx: a refusal.
            async with session.post(self._url, json=body, allow_redirects=False) as answer:
                status = answer.status
                allowed = 200 <= status < 300
                text = (
                    await _read_capped(answer, self._settings.max_answer_bytes) if allowed else b""
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                what = f"no answer within auth.timeout={self._settings.timeout:g} s"
            else:
                what = type(exc).__name__  # its text may quote the URL, and a secret with it
            return self._failed(what, channel, shown, client)
        finally:
            self._in_flight -= 1
        if not allowed:
            return Verdict(f"the publish check answered {status}", shown)
        if text is None:
            limit = self._settings.max_answer_bytes
            return self._failed(
                f"answer over auth.max_answer_bytes={limit}", channel, shown, client
            )
        named = named_channel(text)
        if named is False:
            return self._failed(
                "its answer is not JSON naming a valid channel", channel, shown, client
            )
        channel = named or channel
        if channel is None:
            return Verdict(NOT_A_CHANNEL, None)
        return Verdict(None, channel)

    def _failed(self, what: str, channel: str | None, shown: str | None, client: str) -> Verdict:
        reason = f"the publish check failed ({what})"
        if self._settings.on_failure == "refuse":
            return Verdict(reason, shown)
        log_event(
            log,
            logging.WARNING,
            "publish_check_failed",
            client=client,
            reason=f"{reason}; allowed (auth.on_failure=allow)",
        )
        return Verdict(NOT_A_CHANNEL if channel is None else None, channel)


async def _read_capped(answer: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body as it arrives, in however many pieces; None past ``limit`` bytes."""
    pieces: list[bytes] = []
    size = 0
    async for piece in answer.content.iter_any():
        size += len(piece)
        if size > limit:
            return None
        pieces.append(piece)
    return b"".join(pieces)


def named_channel(answer: bytes) -> str | bool | None:
    """The channel a 2xx answer names; None if it names none; False if it is not usable.

    Only a JSON object can name one: other bodies ("OK", a page; nginx-rtmp reads none) name
    none, but an object that does not parse, or names no valid channel, is an answer gone wrong,
    not a publish to go ahead with under the default channel."""
    if not answer.lstrip().startswith(b"{"):
        return None
    try:
        document = json.loads(answer)
    except (ValueError, UnicodeDecodeError):
        return False
    channel = document.get("channel")
    if channel is None:
        return None
    if not isinstance(channel, str) or not is_channel_name(channel):
        return False
    return channel
