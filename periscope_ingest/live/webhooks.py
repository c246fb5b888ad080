"""Webhooks: signed JSON events POSTed to the operator's endpoints, off the ingest path.

Events wait in a bounded queue served by one task; a slow or dead receiver only ever delays other
webhooks, never media. Each delivery is retried with exponential backoff on network errors, 5xx
and 429; other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime

import aiohttp

from periscope_ingest.config_sections import WebhookSettings
from periscope_ingest.logs import log_event

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Periscope-Signature"
EVENT_HEADER = "X-Periscope-Event"
DELIVERY_HEADER = "X-Periscope-Delivery"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, settings: WebhookSettings) -> None:
        self._settings = settings
        self._secret = settings.secret.get_secret_value().encode() if settings.secret else b""
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(settings.queue_size)
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._settings.urls)

    def emit(self, event: str, data: dict) -> None:
        """Queue an event; never blocks and never raises."""
        if not self.enabled:
            return
        body = json.dumps(
            {
                "id": uuid.uuid4().hex,
                "event": event,
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "data": data,
            }
        ).encode()
        if self._queue.full():
            dropped_event, _ = self._queue.get_nowait()
            log_event(
                log, logging.WARNING, "webhook_dropped", webhook=dropped_event, reason="queue full"
            )
        self._queue.put_nowait((event, body))

    async def start(self) -> None:
        if self.enabled:
            timeout = aiohttp.ClientTimeout(total=self._settings.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._task = asyncio.get_running_loop().create_task(self._deliver_forever())

    async def stop(self, drain_for: float = 2.0) -> None:
        """Give queued events a moment to go out, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_for)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._session is not None:
            await self._session.close()

    async def _deliver_forever(self) -> None:
        while True:
            event, body = await self._queue.get()
            try:
                await asyncio.gather(
                    *(self._deliver(url, event, body) for url in self._settings.urls)
                )
            finally:
                self._queue.task_done()

    async def _deliver(self, url: str, event: str, body: bytes) -> None:
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event,
            DELIVERY_HEADER: json.loads(body)["id"],
            SIGNATURE_HEADER: sign(self._secret, body),
        }
        delay = self._settings.retry_delay
        for attempt in range(1, self._settings.max_attempts + 1):
            reason: str
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    if response.status < 300:
                        return
                    reason = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # the receiver refuses this event: retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = repr(exc)
            log_event(
                log,
                logging.WARNING,
                "webhook_failed",
                webhook=event,
                attempt=attempt,
                reason=reason,
            )
            if attempt < self._settings.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300)
        log_event(log, logging.ERROR, "webhook_given_up", webhook=event, reason=reason)
