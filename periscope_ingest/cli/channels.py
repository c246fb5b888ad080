"""The commands that change channels on the data directory: ``accounts`` (their stream keys)
and ``restream`` (the other servers their broadcasts are forwarded to)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from periscope_ingest.cli.errors import CliError

if TYPE_CHECKING:
    from periscope_ingest.config import Settings


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


def accounts(settings: Settings, args: argparse.Namespace) -> int:
    from periscope_ingest.storage.accounts import AccountError
    from periscope_ingest.storage.layout import DataLayout
    from periscope_ingest.storage.stores import open_accounts
    from periscope_ingest.sunset import Lifecycle

    layout = DataLayout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    store = open_accounts(settings.catalog, layout)
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


def restream(settings: Settings, args: argparse.Namespace) -> int:
    """Targets are read when a broadcast starts: a change here applies to the next broadcast
    (the API applies changes to a live one at once)."""
    from periscope_ingest.storage.layout import DataLayout
    from periscope_ingest.storage.restream import RestreamError
    from periscope_ingest.storage.stores import open_accounts, open_restream_store

    layout = DataLayout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    has_accounts = settings.catalog.uses_postgres or layout.accounts_path.exists()
    if not settings.open_publish and has_accounts:
        accounts = open_accounts(settings.catalog, layout)
        try:
            if accounts.get(args.handle) is None:
                raise CliError(f"no account {args.handle!r}")
        finally:
            accounts.close()
    store = open_restream_store(settings.catalog, layout)
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
