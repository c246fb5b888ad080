"""The command line's grammar: every command, its options and their help.

``serve --help`` also prints every setting (config.settings_reference); the settings models
are imported only then, so the other commands, above all ``export``, do not pay for them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from periscope_ingest import __version__


class _SettingsHelp(argparse.Action):
    """serve --help: the usual help, then every setting with its environment variable and
    default. The settings models load only here, not for every command (see config_file)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from periscope_ingest.config import settings_reference

        print(parser.format_help() + "\n" + settings_reference(), end="")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="periscope-ingest", description="Self-hosted live video: RTMP in, HLS out."
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (default: $PERISCOPE_CONFIG if set)"
    )
    # --config is accepted after the command too (`serve --config FILE`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the RTMP and HTTP servers", parents=[common], add_help=False
    )
    serve.add_argument(
        "-h", "--help", action=_SettingsHelp, help="show this help and every setting, then exit"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N server processes on the same ports (SO_REUSEPORT), one per core; needs"
        " cluster.redis_url, through which any of them serves any viewer (default: 1)",
    )
    # One process of `serve --workers` (cli/workers.py starts them): its index.
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    fetch = commands.add_parser(
        "fetch-hlsjs",
        help="download the pinned hls.js (checked against its hash) for the web pages",
    )
    fetch.add_argument("--dest", type=Path, help="directory (default: the package's own)")
    config = commands.add_parser("config", help="the settings")
    config_commands = config.add_subparsers(dest="action", required=True)
    config_commands.add_parser(
        "show", help="print the settings in effect as TOML (secrets masked)", parents=[common]
    )
    status = commands.add_parser(
        "status", help="live streams of the running server: bitrate, viewers", parents=[common]
    )
    status.add_argument("--url", help="the server's HTTP address (default: from the settings)")
    health = commands.add_parser(
        "health",
        help="exit 0 if the running server answers (container health checks)",
        parents=[common],
    )
    health.add_argument("--url", help="the server's HTTP address (default: from the settings)")

    broadcasts = commands.add_parser("broadcasts", help="recorded broadcasts")
    broadcasts_commands = broadcasts.add_subparsers(dest="action", required=True)
    listing = broadcasts_commands.add_parser(
        "list", help="list broadcasts, newest first", parents=[common]
    )
    listing.add_argument("--channel")
    listing.add_argument("--status", choices=["live", "ended", "interrupted"])
    listing.add_argument("--json", action="store_true", help="one JSON document")

    export = commands.add_parser(
        "export",
        help="write a broadcast (or a clip of it, or a whole channel) as MP4",
        parents=[common],
    )
    export.add_argument(
        "broadcast",
        nargs="?",
        help="broadcast id (an id that begins with '-', as older ones can, goes last, after"
        " --: export -o FILE -- ID)",
    )
    export.add_argument("--channel", help="export every finished broadcast of this channel")
    export.add_argument("-o", "--output", type=Path, required=True, help="file, or directory")
    export.add_argument("--start", type=float, help="clip start, seconds")
    export.add_argument("--end", type=float, help="clip end, seconds")

    accounts = commands.add_parser("accounts", help="channels and their stream keys")
    accounts_commands = accounts.add_subparsers(dest="action", required=True)
    create = accounts_commands.add_parser(
        "create", help="create a channel; prints its stream key and token once", parents=[common]
    )
    create.add_argument("handle", help="public name used in playback URLs")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    accounts_commands.add_parser("list", help="list accounts (no secrets)", parents=[common])
    rotate = accounts_commands.add_parser(
        "rotate-key", help="a new stream key; the old one stops working", parents=[common]
    )
    rotate.add_argument("handle")
    rotate.add_argument("--json", action="store_true")
    disable = accounts_commands.add_parser(
        "disable", help="refuse the account's stream key from now on", parents=[common]
    )
    disable.add_argument("handle")

    restream = commands.add_parser(
        "restream", help="forward a channel's broadcasts to other RTMP servers"
    )
    restream_commands = restream.add_subparsers(dest="action", required=True)
    restream_add = restream_commands.add_parser(
        "add", help="forward HANDLE's broadcasts to URL (rtmp:// or rtmps://)", parents=[common]
    )
    restream_add.add_argument("handle")
    restream_add.add_argument("url", help="rtmp[s]://host[:port]/app/stream-key")
    restream_list = restream_commands.add_parser(
        "list", help="HANDLE's targets (stream keys hidden)", parents=[common]
    )
    restream_list.add_argument("handle")
    restream_remove = restream_commands.add_parser(
        "remove", help="stop forwarding HANDLE to a target", parents=[common]
    )
    restream_remove.add_argument("handle")
    restream_remove.add_argument("target", help="the URL as added, or the id `list` shows")
    cluster = commands.add_parser("cluster", help="the nodes sharing cluster.redis_url")
    cluster_commands = cluster.add_subparsers(dest="action", required=True)
    cluster_status = cluster_commands.add_parser(
        "status",
        help="nodes, their channel leases, live streams and the shared services' health",
        parents=[common],
    )
    cluster_status.add_argument("--json", action="store_true", help="print JSON")
    catalog = commands.add_parser("catalog", help="the broadcast catalog")
    catalog_commands = catalog.add_subparsers(dest="action", required=True)
    catalog_commands.add_parser(
        "rebuild", help="rebuild the catalog from the files on disk", parents=[common]
    )
    return parser
