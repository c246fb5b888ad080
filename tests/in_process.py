"""Settings for a server run inside the test's own process (its parts can be inspected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from periscope_ingest.config import Settings, load_settings


def local_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Loopback, ports chosen by the system, any stream key may publish."""
    return load_settings(
        host="127.0.0.1",
        rtmp_port=0,
        http_port=0,
        data_dir=data_dir,
        open_publish=True,
        **overrides,
    )
