"""A first start with accounts and none yet: one channel is made, so publishing works at once.

Its secrets (the stream key and API token) go to the terminal once, like `accounts create`,
never to the log; without a terminal (systemd, docker), to a file only the server's user reads.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from periscope_ingest.config import Settings
from periscope_ingest.logs import log_event
from periscope_ingest.storage.atomic import write_private
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.sunset import Lifecycle
from periscope_ingest.web import urls

log = logging.getLogger(__name__)


def first_channel(
    settings: Settings, accounts: Any, lifecycle: Lifecycle, layout: DataLayout
) -> str | None:
    """The handle of the channel made, or None (accounts exist, or registrations are closed)."""
    if accounts.count() > 0 or lifecycle.registration_refusal() is not None:
        return None
    credentials = accounts.create(settings.first_channel)
    host = "HOST" if settings.host in ("0.0.0.0", "::") else settings.host
    banner = "\n".join(
        [
            "",
            "First start: created the channel "
            f"{credentials.handle!r}. These secrets are shown only now:",
            f"  RTMP server (OBS 'Server'):   rtmp://{host}:{settings.rtmp_port}"
            f"/{settings.rtmp.app}",
            f"  Stream key:                   {credentials.stream_key}",
            f"  API token:                    {credentials.token}",
            f"  Watch:                        http://{host}:{settings.http_port}"
            + urls.live_playlist(credentials.handle),
            "More channels: periscope-ingest accounts create HANDLE",
            "",
        ]
    )
    if sys.stdout.isatty():
        print(banner, flush=True)
    else:
        # Not a terminal: stdout is a log (systemd's journal, docker logs, a file), which
        # keeps what it gets and shows it to whoever reads logs. The secrets go to a file
        # only the server's user can read, and the log says where.
        path = layout.first_start_secrets_path
        write_private(path, (banner.strip() + "\n").encode())
        log_event(
            log,
            logging.WARNING,
            "first_channel_created",
            channel=credentials.handle,
            secrets_file=str(path),
            note="the stream key and API token are in this file (mode 0600); delete it once read",
        )
    return credentials.handle
