"""Command line: ``periscope-ingest serve | status | health | config show | broadcasts list |
export | accounts | restream | catalog rebuild | cluster status | fetch-hlsjs``.

Everything but ``serve``, ``status`` and ``health`` works on the data directory directly, with or
without a running server. This module dispatches; parser.py holds the grammar, and each command
lives with its kind: server.py (the running server), catalog.py, export.py, channels.py
(accounts and restream targets). Settings are loaded here, once, for every command but
``export`` and ``fetch-hlsjs``.
"""

from __future__ import annotations

import sys

from periscope_ingest.cli import catalog, channels, server
from periscope_ingest.cli.errors import CliError, UsageError
from periscope_ingest.cli.export import export
from periscope_ingest.cli.parser import build_parser
from periscope_ingest.config_file import SettingsError, catalog_url_setting, data_dir_setting


def _export(args) -> int:
    """The data directory only: the settings models would add ~12 MiB to an export. A
    PostgreSQL catalog needs them (its URL and timeout, checked), and only then are they read."""
    from periscope_ingest.storage.postgres import DatabaseUnavailable

    catalog = None
    if catalog_url_setting(args.config) != "sqlite:":
        from periscope_ingest.config import load_settings

        catalog = load_settings(args.config).catalog
    try:
        return export(data_dir_setting(args.config), args, catalog)
    except DatabaseUnavailable as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch-hlsjs":
        return server.fetch_hlsjs(args.dest)
    try:
        if args.command == "export":
            return _export(args)
        from periscope_ingest.config import load_settings

        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    if args.command == "serve":
        if args.workers > 1 and args.worker is None:
            from periscope_ingest.cli.workers import serve_workers

            return serve_workers(settings, args.workers, getattr(args, "config", None))
        return server.serve(settings, args.worker, args.workers)
    if args.command == "status":
        return server.status(settings, args.url)
    if args.command == "health":
        return server.health(settings, args.url)
    if args.command == "config":
        from periscope_ingest.config import settings_in_effect

        print(settings_in_effect(settings), end="")
        return 0
    from periscope_ingest.storage.postgres import DatabaseUnavailable

    try:
        if args.command == "broadcasts":
            return catalog.broadcasts_list(settings, args)
        if args.command == "catalog":
            return catalog.catalog_rebuild(settings)
        if args.command == "accounts":
            return channels.accounts(settings, args)
        if args.command == "restream":
            return channels.restream(settings, args)
        if args.command == "cluster":
            from periscope_ingest.cli.cluster import cluster_status

            return cluster_status(settings, as_json=args.json)
    except CliError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2
    return 2
