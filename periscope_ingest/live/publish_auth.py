"""Publish authorisation by HTTP callback (auth.publish_url).

Operators of nginx-rtmp (on_publish), SRS (http_hooks) and MediaMTX (authHTTPAddress) decide
who may publish in their own service: the server POSTs what it knows of the publish and follows
the answer. Here, after the built-in checks (accounts, or a valid channel name with open
publishing):

    POST publish_url  {"action": "publish", "app": "live", "key": "...", "channel": "...",
                       "client": "203.0.113.7", "query": "token=..."}

A 2xx answer allows the publish; its JSON body may name the channel to publish on
({"channel": "alice"}). Anything else refuses it with NetStream.Publish.BadName, and the log
says why (the status, never the key). A callback that cannot be reached, times out or answers
garbage follows auth.on_failure (refuse by default).

Anyone can ask to publish, so the checks are bounded before authorisation: at most
auth.max_concurrent in flight (a publish beyond is refused at once), auth.timeout each, and at
most MAX_ANSWER_BYTES of each answer read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp

from periscope_ingest.config import AuthSettings
from periscope_ingest.storage.layout import is_channel_name

MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str  # for the log (and the refusal's description)
    channel: str | None = None  # the channel the callback named, if it named one


class PublishCallback:
    def __init__(self, settings: AuthSettings) -> None:
        assert settings.publish_url is not None
        self._settings = settings
        self._url = settings.publish_url
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            connector=aiohttp.TCPConnector(limit=self._settings.max_concurrent),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def decide(
        self, *, app: str, key: str, channel: str | None, client: str, query: str
    ) -> Verdict:
        limit = self._settings.max_concurrent
        if self._in_flight >= limit or self._session is None:
            return Verdict(
                False, f"too many publish checks in progress (auth.max_concurrent={limit})"
            )
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
            async with self._session.post(self._url, json=body) as response:
                answer = await response.content.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._failed(type(exc).__name__)
        finally:
            self._in_flight -= 1
        if not 200 <= status < 300:
            return Verdict(False, f"the publish check answered {status}")
        named = _named_channel(answer)
        if named is False:
            return self._failed("its answer is not JSON naming a valid channel")
        return Verdict(True, f"the publish check answered {status}", named or None)

    def _failed(self, what: str) -> Verdict:
        if self._settings.on_failure == "allow":
            return Verdict(True, f"the publish check failed ({what}); allowed (auth.on_failure)")
        return Verdict(False, f"the publish check failed ({what})")


def _named_channel(answer: bytes) -> str | bool | None:
    """The channel a 2xx answer names; None if it names none; False if it is not usable."""
    if not answer.strip():
        return None
    if len(answer) > MAX_ANSWER_BYTES:
        return False
    try:
        document = json.loads(answer)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(document, dict) or "channel" not in document:
        return None
    channel = document["channel"]
    if not isinstance(channel, str) or not is_channel_name(channel):
        return False
    return channel
