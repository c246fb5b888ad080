"""Who may publish: the checks a publish request goes through before a channel is claimed.

In order: one publish per connection, the configured application, the service's lifecycle (it
may have closed broadcasting), the stream key (an account's, or with open publishing any key that
is a channel name), the publish callback (auth.publish_url) and the server's max_publishers. The
first check that fails gives the refusal, for the log and the client, and its metric label.
Claiming the channel (busy or not) is the session's next step (rtmp_session.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from periscope_ingest.config_sections import RtmpSettings
from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.live.publish_auth import PublishCallback
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.rtmp_reasons import PublishRefusal
from periscope_ingest.metrics import Metrics
from periscope_ingest.rtmp.connection import PublishRequested
from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.layout import is_channel_name
from periscope_ingest.storage.objects import ObjectStore
from periscope_ingest.sunset import Lifecycle

__all__ = ["PublishDecision", "PublishPolicy", "decide_publish", "shown_app"]

# Client-chosen names (the RTMP application) are shown at most this long in logs.
SHOWN_NAME_CHARS = 40


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    """Who may publish: accounts (or any key with open_publish) while the service accepts it."""

    lifecycle: Lifecycle
    accounts: AccountStore | None  # None: open publishing, the channel is the key
    on_started: Callable[[StreamPipeline], None] | None = None
    on_ended: Callable[[BroadcastRecord], None] | None = None
    metrics: Metrics | None = None
    publish_callback: PublishCallback | None = None  # auth.publish_url, after the checks above
    # storage.url s3://: the uploader's notice of a complete file (live/uploader.py).
    on_file_complete: Callable[[Path], None] | None = None
    # Cluster only: where a broadcast continued from another node has its recording so far (the
    # object store, or the data directory the nodes share). None: broadcasts never move here.
    recordings: ObjectStore | None = None


@dataclass(frozen=True, slots=True)
class PublishDecision:
    channel: str | None  # where to publish; on a refusal, what the log may show (never the key)
    refusal: str | None  # None: allowed (if channel is set); else why not
    label: PublishRefusal  # the metric label, should the publish be refused


def shown_app(app: str) -> str:
    """The application name as logs show it: its first path component only. Users paste the
    whole URL with their stream key (rtmp://host/live/KEY) into OBS's Server field; whatever
    follows the first '/' or '?' may be a secret."""
    head = app.split("/", 1)[0].split("?", 1)[0][:SHOWN_NAME_CHARS]
    return head if head == app else f"{head}/…"


async def decide_publish(
    request: PublishRequested,
    *,
    policy: PublishPolicy,
    settings: RtmpSettings,
    registry: PublisherRegistry,
    address: str,
    already_published: bool,
) -> PublishDecision:
    """Run the checks of the module docstring; address is the client's, for the callback."""
    channel: str | None = None
    refusal = None
    label = PublishRefusal.OTHER
    if already_published:
        refusal, label = "this connection already published", PublishRefusal.REPEATED
    elif request.app != settings.app:
        refusal = f"unknown application {shown_app(request.app)!r}; publish to /{settings.app}"
        label = PublishRefusal.WRONG_APP
    elif (closed := policy.lifecycle.publish_refusal()) is not None:
        refusal, label = closed, PublishRefusal.BROADCASTS_CLOSED
    elif policy.accounts is None:
        if is_channel_name(request.name):
            channel = request.name
        elif policy.publish_callback is None:  # else the callback may name the channel
            refusal = "stream keys are 1-64 letters, digits, '-' or '_'"
            label = PublishRefusal.BAD_KEY
    else:
        account = await asyncio.to_thread(policy.accounts.by_stream_key, request.name)
        if account is None:
            # Never echo or log the key: the reason says what, not which.
            refusal, label = "unknown, rotated or disabled stream key", PublishRefusal.BAD_KEY
        else:
            channel = account.handle
    if refusal is None and policy.publish_callback is not None:
        verdict = await policy.publish_callback.decide(
            app=request.app,
            key=request.name,
            channel=channel,
            client=address,
            query=request.query,
        )
        refusal, channel = verdict.refusal, verdict.channel
        label = PublishRefusal.CALLBACK
    # Counted once the checks above are done: they may have waited.
    if refusal is None and len(registry.live()) >= settings.max_publishers:
        refusal = f"the server is full (max_publishers={settings.max_publishers})"
        label = PublishRefusal.FULL
    return PublishDecision(channel, refusal, label)
