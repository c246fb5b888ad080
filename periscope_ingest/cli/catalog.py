"""The commands that read or rebuild the broadcast catalog (``broadcasts list``,
``catalog rebuild``), working on the data directory with or without a running server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.cli.errors import CliError

if TYPE_CHECKING:
    from periscope_ingest.config import Settings
    from periscope_ingest.config_services import CatalogSettings


def open_catalog(data_dir: Path, catalog: CatalogSettings | None = None):
    """The data directory's layout and catalog (catalog.url's PostgreSQL when set); a CliError
    if the data directory has no SQLite catalog (a wrong data directory, most often)."""
    from periscope_ingest.storage.layout import DataLayout

    layout = DataLayout(data_dir)
    if catalog is not None and catalog.uses_postgres:
        # Only then: storage.stores loads the settings models, which export does without.
        from periscope_ingest.storage.stores import open_catalog as open_store

        return layout, open_store(catalog, layout)
    from periscope_ingest.storage.catalog import Catalog

    if not layout.catalog_path.exists():
        raise CliError(f"no catalog in {layout.root} (is PERISCOPE_DATA_DIR right?)")
    return layout, Catalog(layout.catalog_path)


def broadcasts_list(settings: Settings, args: argparse.Namespace) -> int:
    _, catalog = open_catalog(settings.data_dir, settings.catalog)
    records = [
        r
        for r in reversed(catalog.all())
        if r.status != "deleted"
        and (args.channel is None or r.channel == args.channel)
        and (args.status is None or r.status == args.status)
    ]
    if args.json:
        print(json.dumps([r.as_json() for r in records], indent=1))
        return 0
    print(f"{'ID':12}  {'CHANNEL':16}  {'STARTED':24}  {'STATUS':11}  {'DURATION':>9}  TITLE")
    for r in records:
        print(
            f"{r.id:12}  {r.channel:16.16}  {r.started_at:24}  {r.status:11}"
            f"  {r.duration:8.1f}s  {r.title or ''}"
        )
    return 0


def catalog_rebuild(settings: Settings) -> int:
    from periscope_ingest.storage.layout import DataLayout
    from periscope_ingest.storage.recovery import rebuild_catalog
    from periscope_ingest.storage.stores import open_catalog as open_store

    layout = DataLayout(settings.data_dir)
    if not layout.channels_dir.is_dir():
        raise CliError(f"no recordings in {layout.root} (is PERISCOPE_DATA_DIR right?)")
    catalog = open_store(settings.catalog, layout)
    count = rebuild_catalog(layout, catalog)
    catalog.close()
    print(f"catalog rebuilt: {count} broadcasts")
    return 0
