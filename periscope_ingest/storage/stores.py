"""Opening the catalog, the accounts and the restream targets where catalog.url says: SQLite
files in the data directory (sqlite:, the default) or one PostgreSQL database.

The server and every CLI command open them through these three functions, so both backends are
chosen in one place. The PostgreSQL modules, and psycopg with them, are imported only when a
postgresql:// URL is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from periscope_ingest.config_services import CatalogSettings
from periscope_ingest.storage.accounts import AccountStore, open_sqlite_accounts
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.postgres import DatabaseUnavailable
from periscope_ingest.storage.restream import RestreamStore, SqliteRestreamStore

if TYPE_CHECKING:
    from periscope_ingest.storage.catalog_pg import PostgresCatalog

# The catalog the server and the CLI hold, whichever backend catalog.url chose.
CatalogStore: TypeAlias = "Catalog | PostgresCatalog"

__all__ = [
    "CatalogStore",
    "DatabaseUnavailable",
    "open_accounts",
    "open_catalog",
    "open_restream_store",
]


def open_catalog(settings: CatalogSettings, layout: DataLayout) -> CatalogStore:
    if settings.uses_postgres:
        from periscope_ingest.storage.catalog_pg import PostgresCatalog

        return PostgresCatalog(settings.url, settings.timeout)
    return Catalog(layout.catalog_path)


def open_accounts(settings: CatalogSettings, layout: DataLayout) -> AccountStore:
    if settings.uses_postgres:
        from periscope_ingest.storage.accounts_pg import open_postgres_accounts

        return open_postgres_accounts(settings.url, settings.timeout, layout.server_secret_path)
    return open_sqlite_accounts(layout.accounts_path, layout.server_secret_path)


def open_restream_store(settings: CatalogSettings, layout: DataLayout) -> RestreamStore:
    if settings.uses_postgres:
        from periscope_ingest.storage.restream_pg import PostgresRestreamStore

        return PostgresRestreamStore(settings.url, settings.timeout)
    return SqliteRestreamStore(layout.restream_path)
