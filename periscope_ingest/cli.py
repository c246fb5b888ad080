"""Command line: ``periscope-ingest serve [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from periscope_ingest import __version__
from periscope_ingest.config import SettingsError, load_settings
from periscope_ingest.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="periscope-ingest", description="Self-hosted live video: RTMP in, HLS out."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the RTMP and HTTP servers")
    serve.add_argument(
        "--config", type=Path, help="TOML settings file (default: $PERISCOPE_CONFIG if set)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.config)
    return 2


def _serve(config: Path | None) -> int:
    from periscope_ingest.service import PortInUse, serve

    try:
        settings = load_settings(config)
    except SettingsError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except PortInUse as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
