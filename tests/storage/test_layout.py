from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.storage.atomic import partial_path, publish_partial, write_atomic
from periscope_ingest.storage.layout import (
    BROADCAST_ID_PATTERN,
    DataLayout,
    InvalidName,
    new_broadcast_id,
)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", "-lead", "x" * 65, "é", "a b"]
)
def test_bad_channel_names_never_become_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidName):
        DataLayout(tmp_path).channel_dir(name)


@given(st.text(max_size=80), st.text(max_size=20), st.text(max_size=20))
def test_any_accepted_name_stays_inside_the_data_dir(
    channel: str, broadcast: str, seg: str
) -> None:
    layout = DataLayout(Path("/srv/data"))
    try:
        path = layout.find_segment(channel, broadcast, seg)
    except InvalidName:
        return
    assert path.resolve().is_relative_to(layout.channels_dir)
    assert ".." not in path.parts


def test_broadcast_ids_are_url_safe_and_unique() -> None:
    ids = {new_broadcast_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(BROADCAST_ID_PATTERN.fullmatch(i) for i in ids)


def test_segment_paths_and_uris(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    assert layout.segment_uri("AbCdEfGhIjKl", 42) == "AbCdEfGhIjKl/000042.ts"
    assert layout.segment_path("c", "AbCdEfGhIjKl", 42) == (
        tmp_path.resolve() / "channels" / "c" / "AbCdEfGhIjKl" / "000042.ts"
    )


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.m3u8"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["index.m3u8"]


def test_partial_file_is_hidden_until_published(tmp_path: Path) -> None:
    target = tmp_path / "000001.ts"
    partial_path(target).write_bytes(b"x")
    assert not target.exists() and partial_path(target).name.startswith(".")
    publish_partial(target)
    assert target.read_bytes() == b"x" and not partial_path(target).exists()
