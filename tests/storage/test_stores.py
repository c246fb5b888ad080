"""The catalog, the accounts and the restream targets, each run on both backends: SQLite files
(the default) and a real PostgreSQL (tests/postgres_server.py). The same calls must give the
same answers, the same order, the same cursors and the same errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from periscope_ingest.config_services import CatalogSettings
from periscope_ingest.storage.accounts import AccountError
from periscope_ingest.storage.catalog import BroadcastRecord, InvalidCursor
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.restream import RestreamError, TooManyTargets
from periscope_ingest.storage.retention import delete_broadcast
from periscope_ingest.storage.stores import open_accounts, open_catalog, open_restream_store

TARGET = "rtmp://live.example.com/app/secret-key-1"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    """(catalog settings, data layout) for one backend; PostgreSQL gets a new database."""
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    if request.param == "sqlite":
        return CatalogSettings(), layout
    return CatalogSettings(url=request.getfixturevalue("postgres_url")), layout


@pytest.fixture
def catalog(backend):
    store = open_catalog(*backend)
    yield store
    store.close()


@pytest.fixture
def accounts(backend):
    store = open_accounts(*backend)
    yield store
    store.close()


@pytest.fixture
def restream(backend):
    store = open_restream_store(*backend)
    yield store
    store.close()


def record(i: int, day: int, channel: str = "chan", status: str = "ended") -> BroadcastRecord:
    return BroadcastRecord(
        f"b{i:011d}", channel, f"2026-06-{day:02d}T00:00:00.000Z", status, size=100 * i
    )


def test_a_record_reads_back_field_for_field_and_put_replaces(catalog) -> None:
    full = BroadcastRecord(
        "AbCdEfGhIjKl", "chan", "2026-06-01T10:00:00.123Z", "live", title="Hi ünïcode",
        duration=12.345, size=3_000_000_000, segments=7, video_codec="avc1.64001f",
        audio_codec="mp4a.40.2", width=1280, height=720, frame_rate=29.97, discontinuities=1,
    )  # fmt: skip
    catalog.put(full)
    assert catalog.get(full.id) == full
    ended = BroadcastRecord(**{**full.as_json(), "status": "ended", "mp4_size": 42})
    catalog.put(ended)
    assert catalog.get(full.id) == ended
    assert catalog.get("nope") is None
    assert catalog.all() == [ended]


def test_listing_is_newest_first_with_ties_by_id_and_pages_by_cursor(catalog) -> None:
    # Two on the same start: the cursor must tell them apart by id.
    records = [record(1, 1), record(2, 2), record(3, 2), record(4, 3), record(5, 4)]
    records.append(record(6, 5, status="deleted"))
    records.append(record(7, 5, channel="other"))
    for r in records:
        catalog.put(r)
    seen, cursor = [], None
    while True:
        page, cursor = catalog.list(channel="chan", limit=2, cursor=cursor)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == ["b00000000005", "b00000000004", "b00000000003", "b00000000002", "b00000000001"]
    everything, end = catalog.list(limit=10)
    assert [r.id for r in everything][:1] == ["b00000000007"] and end is None
    assert "b00000000006" not in [r.id for r in everything]
    deleted, _ = catalog.list(status="deleted")
    assert [r.id for r in deleted] == ["b00000000006"]
    assert [r.id for r in catalog.all()][:1] == ["b00000000001"]
    with pytest.raises(InvalidCursor):
        catalog.list(cursor="!!")


def test_total_size_counts_mp4s_and_skips_deleted_and_remove_clear(catalog) -> None:
    assert catalog.total_size() == 0
    catalog.put(record(1, 1))
    catalog.put(BroadcastRecord(**{**record(2, 2).as_json(), "mp4_size": 50}))
    catalog.put(record(3, 3, status="deleted"))
    assert catalog.total_size() == 100 + 200 + 50
    catalog.remove("b00000000001")
    assert catalog.get("b00000000001") is None and catalog.total_size() == 250
    catalog.clear()
    assert catalog.all() == []


def test_delete_removes_files_and_row_together(backend, catalog) -> None:
    _, layout = backend
    gone, kept = record(1, 1), record(2, 2)
    for r in (gone, kept):
        catalog.put(r)
        directory = layout.broadcast_dir(r.channel, r.id)
        directory.mkdir(parents=True)
        (directory / "000000.ts").write_bytes(b"x")
    delete_broadcast(layout, catalog, gone)
    assert catalog.get(gone.id) is None and catalog.get(kept.id) is not None
    assert not layout.broadcast_dir("chan", gone.id).exists()


def test_accounts_create_look_up_rotate_and_disable(accounts) -> None:
    assert accounts.count() == 0
    alice = accounts.create("alice")
    accounts.create("bob")
    assert accounts.count() == 2
    assert [a.handle for a in accounts.list()] == ["alice", "bob"]
    assert accounts.by_stream_key(alice.stream_key).handle == "alice"
    assert accounts.by_token(alice.token).handle == "alice"
    assert accounts.by_token(alice.stream_key) is None  # a key is not a token
    assert accounts.by_stream_key("x" * 32) is None
    assert accounts.by_stream_key("not valid!") is None
    with pytest.raises(AccountError, match="is taken"):
        accounts.create("alice")
    with pytest.raises(AccountError, match="invalid handle"):
        accounts.create("api")
    rotated = accounts.rotate_key("alice")
    assert accounts.by_stream_key(alice.stream_key) is None
    assert accounts.by_stream_key(rotated.stream_key).handle == "alice"
    assert accounts.get("alice").key_rotated_at is not None
    accounts.set_disabled("alice")
    assert accounts.get("alice").disabled is True
    assert accounts.by_stream_key(rotated.stream_key) is None
    assert accounts.by_token(alice.token) is None
    accounts.set_disabled("alice", False)
    assert accounts.by_token(alice.token).handle == "alice"
    with pytest.raises(AccountError, match="no account"):
        accounts.rotate_key("carol")
    with pytest.raises(AccountError, match="no account"):
        accounts.set_disabled("carol")
    assert accounts.get("carol") is None


def test_restream_targets_add_list_remove_and_limits(restream) -> None:
    first = restream.add("chan", TARGET, max_targets=2)
    second = restream.add("chan", TARGET.replace("-1", "-2"), max_targets=2)
    assert second.id > first.id
    assert [t.url for t in restream.list("chan")] == [TARGET, TARGET.replace("-1", "-2")]
    assert restream.list("other") == []
    with pytest.raises(TooManyTargets):
        restream.add("chan", TARGET.replace("-1", "-3"), max_targets=2)
    with pytest.raises(RestreamError, match="already restreams"):
        restream.add("chan", TARGET, max_targets=5)
    with pytest.raises(RestreamError, match="invalid restream URL"):
        restream.add("chan", "http://example.com/x", max_targets=5)
    with pytest.raises(RestreamError, match="invalid channel"):
        restream.add("../x", TARGET, max_targets=5)
    assert restream.remove("chan", first.id) is True
    assert restream.remove("chan", first.id) is False
    assert restream.remove("other", second.url) is False
    assert restream.remove("chan", 2**70) is False
    assert restream.remove("chan", second.url) is True
    assert restream.list("chan") == []


def test_restream_limit_holds_when_adds_race(restream) -> None:
    errors: list[Exception] = []

    def add(n: int) -> None:
        try:
            restream.add("chan", TARGET.replace("-1", f"-{n}"), max_targets=3)
        except TooManyTargets as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(restream.list("chan")) == 3 and len(errors) == 5
