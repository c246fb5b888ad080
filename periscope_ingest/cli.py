"""Command line: ``periscope-ingest serve | broadcasts list | export | catalog rebuild``.

Everything but ``serve`` works on the data directory directly, with or without a running server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest import __version__
from periscope_ingest.config_file import SettingsError, data_dir_setting
from periscope_ingest.logs import configure_logging

if TYPE_CHECKING:
    from periscope_ingest.config import Settings


class CliError(Exception):
    """A problem to tell the user in one line."""


class UsageError(CliError):
    """The command line asks for something impossible (exit code 2, like a bad argument)."""


class _SettingsHelp(argparse.Action):
    """serve --help: the usual help, then every setting with its environment variable and
    default. The settings models load only here, not for every command (see config_file)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from periscope_ingest.config import settings_reference

        print(parser.format_help() + "\n" + settings_reference(), end="")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
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
    export.add_argument("broadcast", nargs="?", help="broadcast id")
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
    catalog = commands.add_parser("catalog", help="the broadcast catalog")
    catalog_commands = catalog.add_subparsers(dest="action", required=True)
    catalog_commands.add_parser(
        "rebuild", help="rebuild the catalog from the files on disk", parents=[common]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fetch-hlsjs":
        return _fetch_hlsjs(args.dest)
    try:
        if args.command == "export":
            # The data directory only: the settings models would add ~12 MiB to an export.
            return _export(data_dir_setting(args.config), args)
        from periscope_ingest.config import load_settings

        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    if args.command == "serve":
        return _serve(settings)
    if args.command == "status":
        return _status(settings, args.url)
    if args.command == "health":
        return _health(settings, args.url)
    if args.command == "config":
        from periscope_ingest.config import settings_in_effect

        print(settings_in_effect(settings), end="")
        return 0
    try:
        if args.command == "broadcasts":
            return _broadcasts_list(settings, args)
        if args.command == "catalog":
            return _catalog_rebuild(settings)
        if args.command == "accounts":
            return _accounts(settings, args)
        if args.command == "restream":
            return _restream(settings, args)
    except CliError as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    return 2


def _fetch_hlsjs(dest: Path | None) -> int:
    from periscope_ingest.web import hlsjs

    directory = dest or hlsjs.VENDOR_DIR
    try:
        hlsjs.fetch(directory)
    except (hlsjs.HlsJsError, OSError) as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    print(f"hls.js {hlsjs.HLSJS_VERSION} installed in {directory}")
    return 0


def _serve(settings: Settings) -> int:
    from periscope_ingest.live.rtmp_server import TlsError
    from periscope_ingest.service import PortInUse, serve
    from periscope_ingest.storage.layout import DataDirError

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except PortInUse as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    except (DataDirError, TlsError) as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _server_url(settings: Settings, url: str | None) -> str:
    """The running server's HTTP address, from the settings (as the server itself reads them)."""
    if url is not None:
        return url
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.http_port}"


def _health(settings: Settings, url: str | None) -> int:
    """Exit 0 if the server answers /healthz (the container's HEALTHCHECK)."""
    import urllib.request

    url = _server_url(settings, url)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=5) as response:
            response.read()
    except OSError as exc:
        print(f"periscope-ingest: no server answers at {url}: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(settings: Settings, url: str | None) -> int:
    import urllib.error
    import urllib.request

    url = _server_url(settings, url)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/streams", timeout=5) as response:
            streams = json.loads(response.read())["streams"]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"periscope-ingest: no server answers at {url}: {exc}", file=sys.stderr)
        return 1
    if not streams:
        print("no live streams")
        return 0
    print(f"{'CHANNEL':20}  {'SINCE':20}  {'VIDEO':24}  {'KBIT/S':>7}  {'FPS':>5}  VIEWERS")
    for s in streams:
        video = f"{s['resolution'] or '-'} {s['video_codec'] or ''}".strip()
        kbits = f"{s['bitrate'] / 1000:.0f}" if s["bitrate"] else "-"
        fps = f"{s['frame_rate']:.1f}" if s["frame_rate"] else "-"
        state = " (reconnecting)" if s.get("reconnecting") else ""
        print(
            f"{s['channel']:20.20}  {s['started_at'][:19]:20}  {video:24.24}  {kbits:>7}"
            f"  {fps:>5}  {s.get('viewers', 0)}{state}"
        )
    return 0


def _open_catalog(data_dir: Path):
    from periscope_ingest.storage.catalog import Catalog
    from periscope_ingest.storage.layout import DataLayout

    layout = DataLayout(data_dir)
    if not layout.catalog_path.exists():
        raise CliError(f"no catalog in {layout.root} (is PERISCOPE_DATA_DIR right?)")
    return layout, Catalog(layout.catalog_path)


def _broadcasts_list(settings: Settings, args: argparse.Namespace) -> int:
    _, catalog = _open_catalog(settings.data_dir)
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


class _Progress:
    """A one-line progress report on a terminal; silent when output is redirected."""

    def __init__(self, label: str, total_bytes: int) -> None:
        self.label = label
        self.total = max(1, total_bytes)
        self.done = 0
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self._last > 0.1:
            self._last = now
            share = min(1.0, self.done / self.total)
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r{self.label} [{bar:30}] {share:4.0%}")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write(f"\r{self.label} [{'#' * 30}] 100%\n")


def _export_one(layout, record, output: Path, start=None, end=None) -> int:
    from periscope_ingest.media.export import ExportError, export_mp4, stream_mp4
    from periscope_ingest.storage.layout import init_segments
    from periscope_ingest.storage.recordings import recording_segments

    segments = recording_segments(layout, record)
    if not segments:
        raise CliError(f"broadcast {record.id} has no recorded media")
    inits = init_segments(segments)
    temporary = output.with_name(f".{output.name}.part")
    try:
        if start is not None or end is not None:
            # A clip exact to a frame needs an edit list: a complete (faststart) MP4.
            export_mp4(segments, temporary, start=start, end=end, inits=inits)
        else:
            progress = _Progress(
                f"{record.id} {record.channel}", sum(p.stat().st_size for p in segments)
            )
            with open(temporary, "wb") as f:

                def write(data: bytes) -> None:
                    f.write(data)
                    progress.add(len(data))

                stream_mp4(segments, write, inits=inits)
            progress.finish()
        os.replace(temporary, output)
    except ExportError as exc:
        raise CliError(f"cannot export {record.id}: {exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return output.stat().st_size


def _export(data_dir: Path, args: argparse.Namespace) -> int:
    from periscope_ingest.storage.recordings import download_name

    target = args.output if args.channel is not None or not args.output.is_dir() else None
    if target is not None and not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: directory {target.parent} does not exist")
    layout, catalog = _open_catalog(data_dir)
    if (args.broadcast is None) == (args.channel is None):
        raise CliError("name a broadcast id, or --channel NAME (not both)")
    if args.broadcast is not None:
        record = catalog.get(args.broadcast)
        if record is None or record.status == "deleted":
            raise CliError(f"no broadcast {args.broadcast}")
        output = args.output
        if output.is_dir():
            output = output / download_name(record)
        size = _export_one(layout, record, output, args.start, args.end)
        print(f"{output} ({size} bytes)")
        return 0
    if args.start is not None or args.end is not None:
        raise CliError("--start/--end apply to one broadcast, not a channel")
    records = [
        r
        for r in catalog.all()
        if r.channel == args.channel and r.status in ("ended", "interrupted") and r.segments
    ]
    if not records:
        raise CliError(f"channel {args.channel} has no finished broadcasts")
    args.output.mkdir(parents=True, exist_ok=True)
    for record in records:
        output = args.output / f"{record.id}-{download_name(record)}"
        size = _export_one(layout, record, output)
        print(f"{output} ({size} bytes)")
    return 0


# How long `accounts create` waits for its webhook to be delivered (retries included).
CLI_WEBHOOK_WAIT_S = 15.0


def _send_webhook(settings: Settings, event: str, data: dict) -> None:
    """Events of work done by the CLI: the server does not see it, so deliver from here, signed
    and retried like the server's, waiting at most CLI_WEBHOOK_WAIT_S."""
    from periscope_ingest.live.webhooks import Webhooks

    if not settings.webhooks.urls:
        return

    async def deliver() -> None:
        hooks = Webhooks(settings.webhooks)
        await hooks.start()
        hooks.emit(event, data)
        await hooks.stop(drain_for=CLI_WEBHOOK_WAIT_S)

    asyncio.run(deliver())


def _accounts(settings: Settings, args: argparse.Namespace) -> int:
    from periscope_ingest.storage.accounts import AccountError, AccountStore
    from periscope_ingest.storage.layout import DataLayout
    from periscope_ingest.sunset import Lifecycle

    layout = DataLayout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    store = AccountStore(layout.accounts_path, layout.server_secret_path)
    try:
        if args.action == "create":
            refusal = Lifecycle(settings.sunset, layout.phase_file).registration_refusal()
            if refusal is not None:
                raise CliError(refusal)
            credentials = store.create(args.handle)
            if args.json:
                print(json.dumps(credentials.as_json()))
            else:
                print(f"channel:     {credentials.handle}")
                print(f"stream key:  {credentials.stream_key}")
                print(f"API token:   {credentials.token}")
                print("These are shown only now: keep them somewhere safe.")
            _send_webhook(settings, "account.created", {"handle": credentials.handle})
        elif args.action == "list":
            for account in store.list():
                state = "disabled" if account.disabled else "active"
                print(f"{account.handle:24}  {state:8}  created {account.created_at}")
        elif args.action == "rotate-key":
            credentials = store.rotate_key(args.handle)
            if args.json:
                print(json.dumps({"handle": args.handle, "stream_key": credentials.stream_key}))
            else:
                print(f"new stream key for {args.handle}: {credentials.stream_key}")
                print("The old key no longer publishes.")
        elif args.action == "disable":
            store.set_disabled(args.handle)
            print(f"{args.handle} is disabled: its stream key is refused")
    except AccountError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()
    return 0


def _restream(settings: Settings, args: argparse.Namespace) -> int:
    """Targets are read when a broadcast starts: a change here applies to the next broadcast
    (the API applies changes to a live one at once)."""
    from periscope_ingest.storage.accounts import AccountStore
    from periscope_ingest.storage.layout import DataLayout
    from periscope_ingest.storage.restream import RestreamError, RestreamStore

    layout = DataLayout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    if not settings.open_publish and layout.accounts_path.exists():
        accounts = AccountStore(layout.accounts_path, layout.server_secret_path)
        try:
            if accounts.get(args.handle) is None:
                raise CliError(f"no account {args.handle!r}")
        finally:
            accounts.close()
    store = RestreamStore(layout.restream_path)
    try:
        if args.action == "add":
            target = store.add(args.handle, args.url, settings.restream.max_targets)
            print(f"{args.handle} restreams to {target.address.masked} (id {target.id})")
        elif args.action == "list":
            for target in store.list(args.handle):
                print(f"{target.id:6}  {target.address.masked}  added {target.created_at}")
        elif args.action == "remove":
            key: int | str = int(args.target) if args.target.isdigit() else args.target
            if not store.remove(args.handle, key):
                raise CliError(f"{args.handle} has no such restream target (see `restream list`)")
            print(f"{args.handle} no longer restreams to that target")
    except RestreamError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()
    return 0


def _catalog_rebuild(settings: Settings) -> int:
    from periscope_ingest.storage.catalog import Catalog
    from periscope_ingest.storage.layout import DataLayout
    from periscope_ingest.storage.recovery import rebuild_catalog

    layout = DataLayout(settings.data_dir)
    if not layout.channels_dir.is_dir():
        raise CliError(f"no recordings in {layout.root} (is PERISCOPE_DATA_DIR right?)")
    catalog = Catalog(layout.catalog_path)
    count = rebuild_catalog(layout, catalog)
    catalog.close()
    print(f"catalog rebuilt: {count} broadcasts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
