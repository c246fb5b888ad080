"""Recovery after a crash: the channel's live playlist of the broadcast that was cut off."""

from __future__ import annotations

from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.recovery import recover_interrupted
from tests.storage.test_continuation import recorded


def test_a_live_playlist_is_ended_and_an_empty_one_removed(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    layout.ensure()
    catalog = Catalog(tmp_path / "catalog.sqlite")
    live = layout.live_playlist("chan")
    live.parent.mkdir(parents=True, exist_ok=True)
    recorded(layout, ["000000.ts", "000001.ts"])
    live.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nAbCdEf123456/000001.ts\n")
    [record] = recover_interrupted(layout, catalog)
    assert (record.status, record.segments) == ("interrupted", 2)
    assert catalog.get(record.id) is not None
    assert live.read_text().endswith("AbCdEf123456/000001.ts\n#EXT-X-ENDLIST\n")

    # The live playlist is written without fsync: a power cut can leave it empty. Serving that
    # would break players; without it the channel is simply not live.
    layout = DataLayout(tmp_path / "second")
    layout.ensure()
    live = layout.live_playlist("chan")
    live.parent.mkdir(parents=True, exist_ok=True)
    recorded(layout, ["000000.ts"])
    live.write_bytes(b"")
    [record] = recover_interrupted(layout, catalog)
    assert record.segments == 1
    assert not live.exists()
