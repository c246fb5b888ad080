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
    init_segment_for,
    init_segment_name,
    init_segments,
    new_broadcast_id,
    segment_name,
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
    # One in 64 would begin with '-' otherwise, which `periscope-ingest export ID` takes for
    # an option (a CI run failed on it).
    assert not any(i.startswith("-") for i in ids)


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


def test_init_segments_match_init_segment_for(tmp_path: Path) -> None:
    for first in (0, 5):
        (tmp_path / init_segment_name(first)).write_bytes(b"init")
    (tmp_path / "init-junk.mp4").write_bytes(b"")
    late = tmp_path / "late"
    late.mkdir()
    (late / init_segment_name(3)).write_bytes(b"init")
    segments = [tmp_path / segment_name(i, "fmp4") for i in range(8)]
    segments += [late / segment_name(2, "fmp4"), late / segment_name(4, "fmp4")]
    segments += [tmp_path / segment_name(6, "ts")]
    expected = {
        s: init_segment_for(s) for s in segments if s.suffix == ".m4s" and init_segment_for(s)
    }
    assert init_segments(segments) == expected
    assert expected[tmp_path / "000004.m4s"] == tmp_path / "init-000000.mp4"
    assert expected[tmp_path / "000007.m4s"] == tmp_path / "init-000005.mp4"
    assert late / "000002.m4s" not in expected
