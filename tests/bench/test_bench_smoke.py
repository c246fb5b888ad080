"""Smoke tests for scripts/bench/: each benchmark runs with tiny parameters and writes its JSON.

They keep the scripts from rotting; they assert structure and that streams advanced, never speed
(speed and memory are measured by the benchmarks themselves, next to nginx-rtmp). nginx-rtmp is
included when installed (or installable: as root the fixture tries apt-get once); otherwise the
scripts run with --no-nginx. The scripts run in parallel to keep this file well under a
minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.moto_s3 import missing as moto_missing

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

INGEST_FIELDS = {
    "server", "streams", "cpu_percent_of_core", "cpu_percent_per_stream", "cpu_seconds",
    "interval_s", "processes", "machine_busy_percent", "loadavg_1m_start_end", "pss_idle_mib",
    "pss_mean_mib", "pss_max_mib",
    "pss_per_stream_mib", "pss_added_per_stream_mib", "first_segment_s_p50",
    "first_segment_s_max", "first_segment_from_media_s_p50", "streams_with_segments",
    "segment_latency_s_p50",
    "segment_latency_s_p99", "segment_latency_s_max", "segments_listed",
    "segments_listed_in_window", "segments_missed_between_polls", "max_gap_between_segments_s",
    "streams_advancing", "all_advancing", "pushers_alive_at_end", "poll_errors", "http_check_ok",
    "pusher_start_delay_s_p50", "pushers_with_progress",
}  # fmt: skip
VIEWER_FIELDS = {
    "server", "viewers", "stream_ready", "interval_s", "requests", "requests_per_s",
    "mbytes_per_s", "playlists", "segments_fetched", "viewers_with_segments",
    "playlist_ttlb_ms_p50", "playlist_ttlb_ms_p99", "playlist_ttlb_ms_max",
    "segment_ttlb_ms_p50", "segment_ttlb_ms_p99", "segment_ttlb_ms_max", "errors",
    "errors_by_kind", "late_segments", "segments_listed_during_run", "cpu_percent_of_core",
    "client_cpu_percent_of_core", "machine_busy_percent", "loadavg_1m_start_end", "pss_mean_mib",
    "pss_max_mib", "pusher_alive_at_end", "cpu_percent_per_viewer", "cache_cpu_percent_of_core",
    "origin_requests",
}  # fmt: skip
PARSE_FIELDS = {
    "chunk_size", "bytes", "chunks", "messages", "media_messages", "media_events",
    "reader_messages", "media_seconds", "connection_s_best", "connection_s_median",
    "connection_us_per_chunk", "connection_mb_per_s", "connection_ms_per_stream_minute",
    "reader_s_best", "reader_us_per_chunk", "reader_mb_per_s", "baseline_s_best",
    "baseline_us_per_chunk", "baseline_mb_per_s", "connection_vs_baseline", "reader_vs_baseline",
}  # fmt: skip

SCRIPTS = {
    "ingest": ["--streams", "1", "--warmup", "3", "--seconds", "6"],
    "viewers": ["--viewers", "5", "--warmup", "3", "--seconds", "5"],
    "rtmp_parse": ["--capture-seconds", "3", "--repeats", "1"],
    # 18 s broadcast, cached after the first run (the push takes a few seconds).
    "export": ["--minutes", "0.3", "--clip-seconds", "4"],
    # serve against serve --workers 2 (with its own redis-server), 2 pushers each.
    "workers": ["--streams", "2", "--layouts", "plain,workers2", "--warmup", "3", "--seconds", "6"],
    # LL-HLS blocking reloads against latency.py's PyAV publisher, stopped by common.stop_pusher.
    "part_wait": ["--seconds", "4", "--settle", "1"],
    # One mode: hls.js in headless Chromium reading the time painted in the frames.
    "latency": ["--modes", "llhls", "--join-after", "4", "--warmup", "1", "--seconds", "3"],
    # This checkout against itself, one round.
    "paired": ["--a", ".", "--b", ".", "--streams", "1", "--rounds", "1", "--warmup", "3",
               "--seconds", "4"],
    # In process: a recording playlist of 0 and 300 entries, three segments more each way.
    "long_recording": ["--entries", "0,300", "--segments", "3"],
    # moto started by the script; 1 KiB/s: after the first whole upload, only tails.
    "store_uploads": ["--entries", "300", "--segments", "4", "--speedup", "20", "--kib-s", "1"],
}  # fmt: skip
EXPORT_HTTP_FIELDS = {
    "status",
    "headers_ms",
    "first_byte_ms",
    "total_s",
    "bytes",
    "mb_per_s",
    "starts_with_ftyp",
    "content_length",
    "content_range",
    "transfer_encoding",
    "server_rss_idle_mib",
    "server_rss_peak_mib",
    "server_rss_added_mib",
    "server_pss_peak_mib",
    "server_cpu_seconds",
    "machine_busy_percent",
}
EXPORT_JOB_FIELDS = {
    "wall_s",
    "peak_rss_mib",
    "cpu_seconds",
    "bytes",
    "starts_with_ftyp",
    "mb_per_s",
}
EXPORT_RECORDING_FIELDS = {
    "broadcast_id",
    "channel",
    "minutes",
    "duration_s",
    "segments",
    "segment_bytes",
    "flv",
    "flv_bytes",
    "push_wall_s",
    "push_to_ended_s",
    "ingest_x_realtime",
}
EXPORT_RATIOS = {"stream_wall", "cli_wall", "cli_peak_rss", "faststart_wall", "faststart_peak_rss"}


@pytest.fixture(scope="module")
def with_nginx() -> bool:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed: run scripts/install-test-tools.sh")
    usable, _why = common.nginx_available(install=os.geteuid() == 0)
    return usable


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, with_nginx: bool
) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("bench")
    common.ensure_test_file(common.DEFAULT_CACHE)  # once, before the parallel runs
    # Only the scripts whose tests were selected (`-k workers`): one script's check need not
    # load the box with all of them.
    selected = {item.name for item in request.session.items}
    processes = {}
    for name, args in SCRIPTS.items():
        if not any(test.startswith(f"test_{name}_") for test in selected):
            continue
        json_path = out / f"{name}.json"
        cmd = [sys.executable, str(BENCH / f"{name}.py"), *args, "--json", str(json_path)]
        if not with_nginx and name not in (
            "rtmp_parse",
            "export",
            "workers",
            "part_wait",
            "paired",
            "long_recording",
            "store_uploads",
        ):
            cmd.append("--no-nginx")
        if with_nginx and name == "paired":
            cmd[cmd.index("--b") + 1] = "nginx-rtmp"  # ours against the peer, in one window
        if with_nginx and name == "viewers":
            cmd.append("--through-nginx-cache")  # our server behind config/nginx-cache.conf
        if name == "export" and (os.environ.get("CI") or moto_missing() is None):
            cmd.append("--store")  # the same GETs from the object store (moto, started there)
        processes[name] = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    found = {}
    failures = []
    for name, process in processes.items():
        try:
            output, _ = process.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if process.returncode != 0:
            failures.append(f"{name}.py exited with {process.returncode}:\n{output[-3000:]}")
            continue
        if name != "part_wait":  # its one run is one line
            assert "|---" in output, f"{name}.py printed no markdown table:\n{output}"
        found[name] = json.loads((out / f"{name}.json").read_text())
    if failures:
        pytest.fail("\n\n".join(failures))
    return found


def _servers(with_nginx: bool, *more: str) -> set[str]:
    return {"periscope", "nginx-rtmp", *more} if with_nginx else {"periscope"}


def test_ingest_reports_every_field_and_streams_advanced(results, with_nginx: bool) -> None:
    data = results["ingest"]
    assert {x["server"] for x in data["runs"]} == _servers(with_nginx)
    assert data["machine"]["nproc"] >= 1
    for run in data["runs"]:
        assert run.keys() >= INGEST_FIELDS, INGEST_FIELDS - run.keys()
        assert run["segments_listed"] > 0, run
        assert run["segments_listed_in_window"] > 0, run
        assert run["streams_with_segments"] == run["streams"] == 1
        assert run["pushers_alive_at_end"] == 1
        # The latency clock comes from ffmpeg's -progress reports, not the spawn time.
        assert run["pushers_with_progress"] == 1 and run["pusher_start_delay_s_p50"] > 0, run
        assert run["http_check_ok"], run
        assert run["poll_errors"] == 0
        assert run["pss_mean_mib"] > 0
        assert run["cpu_percent_of_core"] is not None
    if with_nginx:
        assert {"streams", "cpu", "pss_per_stream"} <= data["ratios"][0].keys()
    else:
        assert data["ratios"] == [] and data["nginx_skipped"]


def test_viewers_reports_every_field_without_errors(results, with_nginx: bool) -> None:
    data = results["viewers"]
    assert {x["server"] for x in data["runs"]} == _servers(with_nginx, "periscope+cache")
    for run in data["runs"]:
        assert run.keys() >= VIEWER_FIELDS, VIEWER_FIELDS - run.keys()
        assert run["stream_ready"], run
        assert run["errors"] == 0, run["errors_by_kind"]
        assert run["playlists"] > 0
        assert run["segments_fetched"] > 0
        assert run["viewers_with_segments"] == run["viewers"] == 5
        assert run["pusher_alive_at_end"]
    if with_nginx:
        assert {"viewers", "cpu", "cpu_per_request"} <= data["ratios"][0].keys()
        alone, cached = (
            next(x for x in data["runs"] if x["server"] == name)
            for name in ("periscope", "periscope+cache")
        )
        # Alone, the server answers every playlist and segment the viewers asked for; behind
        # the cache, far fewer reach it (about one per playlist refresh and one per segment).
        assert sum(alone["origin_requests"].values()) == alone["requests"], alone
        assert 0 < sum(cached["origin_requests"].values()) < cached["requests"] / 2, cached
        assert cached["cache_cpu_percent_of_core"] is not None
        assert data["cache_ratios"][0]["origin_requests"] < 0.5


def test_workers_spreads_the_streams_over_two_processes(results) -> None:
    data = results["workers"]
    plain, workers = data["runs"]
    assert (plain["layout"], workers["layout"]) == ("plain", "workers2")
    for run in data["runs"]:
        assert run.keys() >= INGEST_FIELDS, INGEST_FIELDS - run.keys()
        assert run["streams_with_segments"] == run["pushers_alive_at_end"] == 2, run
        assert run["http_check_ok"], run
        assert run["pushers_cpu_percent"] > 0
        # Every pusher's connection is held by one serving process, and counted once.
        assert sum(run["process_streams"]) == 2, run["process_streams"]
        assert run["implied_capacity_streams"] > 0
    assert len(plain["process_cpu_percent"]) == 1 and plain["redis_cpu_percent"] is None
    # The supervisor is left out; the two workers and redis-server are measured.
    assert len(workers["process_cpu_percent"]) == 2, workers
    assert workers["supervisor_cpu_percent"] is not None
    assert workers["redis_cpu_percent"] is not None
    assert [x["layout"] for x in data["ratios"]] == ["workers2"]


def test_part_wait_answers_each_blocking_reload(results) -> None:
    data = results["part_wait"]
    assert (data["part_s"], data["gop_s"]) == (0.334, 1.0)
    # About three parts a second for 4 s, each asked for and answered in turn.
    assert data["answers"] >= 4, data
    figures = data["part_end_to_answer_s"]
    assert figures.keys() == {"min", "p50", "p95", "max"}
    assert figures["min"] <= figures["p50"] <= figures["max"], figures
    # A request for the next part is held until it exists: the server waited, not answered at once.
    assert data["held_s"]["p50"] > 0, data


def test_latency_reads_the_painted_time_from_the_frames_on_screen(results) -> None:
    (run,) = results["latency"]["runs"]
    assert (run["mode"], run["server"]) == ("llhls", "periscope")
    assert run["hlsjs_fatal"] == [], run["hlsjs_events"]
    assert run["played_s"] > 0 and run["frames"] > 0, run
    for figure in ("glass_to_glass_s", "hls_latency_s", "pdt_delay_s"):
        assert run[figure]["n"] > 0 and run[figure]["p50"] > 0, (figure, run[figure])
    assert run["server_listing_delay_s"]["count"] > 0, run["server_listing_delay_s"]


def test_long_recording_appends_what_the_rewrite_writes_whole(results) -> None:
    empty, long = results["long_recording"]["rows"]
    assert (empty["entries"], long["entries"]) == (0, 300)
    for row in (empty, long):
        # One entry appended (~75 bytes); the rewrite writes every entry (~75 bytes each) again.
        assert 50 < row["append_bytes"] < 200, row
        assert row["rewrite_bytes"] >= 75 * row["entries"], row
        assert row["append_cpu_ms"] > 0 and row["rewrite_cpu_ms"] > 0


def test_store_uploads_puts_the_new_lines_not_the_whole_playlist(results) -> None:
    rows = {row["mode"]: row for row in results["store_uploads"]["rows"]}
    assert rows.keys() == {"whole", "tail"}
    # Whole: every entry (~75 bytes each) again per segment; tail: the entries since the whole
    # upload (at most four here) and a header line.
    assert rows["whole"]["playlist_bytes_per_segment"] >= 75 * 300, rows
    assert rows["tail"]["playlist_bytes_per_segment"] < 500, rows
    for row in rows.values():
        assert row["playlist_puts_per_segment"] == 1.0 and row["cpu_ms_per_segment"] > 0, row


def test_rtmp_parse_reports_every_field_and_sees_all_media(results) -> None:
    data = results["rtmp_parse"]
    assert [x["chunk_size"] for x in data["runs"]] == [128, 4096]
    for run in data["runs"]:
        assert run.keys() >= PARSE_FIELDS, PARSE_FIELDS - run.keys()
        assert run["media_messages"] > 0
        # Every media message of the recorded push came out of the connection as an event.
        assert run["media_events"] == run["media_messages"]
        assert run["chunks"] >= run["messages"]
    small, large = data["runs"]
    assert small["chunks"] > large["chunks"]


def test_export_reports_every_field_and_makes_mp4s(results) -> None:
    data = results["export"]
    assert data["recording"].keys() >= EXPORT_RECORDING_FIELDS
    assert data["recording"]["segments"] > 0
    assert data["recording"]["duration_s"] > 10
    found = data["results"]
    assert set(found) - {"store"} == {
        "stream", "file", "range", "clip", "cli", "faststart", "ffmpeg"
    }  # fmt: skip
    for name in ("stream", "file", "range", "clip"):
        run = found[name]
        assert run.keys() >= EXPORT_HTTP_FIELDS, (name, EXPORT_HTTP_FIELDS - run.keys())
        assert run["bytes"] > 0, (name, run)
        assert run["first_byte_ms"] > 0 and run["total_s"] > 0
        assert run["server_rss_peak_mib"] > 0
    for name in ("stream", "file", "clip"):
        assert found[name]["status"] == 200, found[name]
        assert found[name]["starts_with_ftyp"], name
    assert found["stream"]["transfer_encoding"] == "chunked"
    assert int(found["file"]["content_length"]) == found["file"]["bytes"]
    assert found["range"]["status"] == 206
    assert found["range"]["content_range"].startswith("bytes ")
    assert found["range"]["bytes"] == int(found["range"]["content_length"])
    # The clip is shorter than the whole broadcast.
    assert found["clip"]["bytes"] < found["file"]["bytes"]
    for name in ("cli", "faststart", "ffmpeg"):
        run = found[name]
        assert run.keys() >= EXPORT_JOB_FIELDS, (name, EXPORT_JOB_FIELDS - run.keys())
        assert run["bytes"] > 0 and run["starts_with_ftyp"], (name, run)
        assert run["wall_s"] > 0 and run["peak_rss_mib"] > 0
    # The file served is the faststart export.
    assert found["file"]["bytes"] == found["faststart"]["bytes"]
    assert data["ratios"].keys() >= EXPORT_RATIOS
    assert all(data["ratios"][k] is not None and data["ratios"][k] > 0 for k in EXPORT_RATIOS)
    if os.environ.get("CI") or moto_missing() is None:
        export_from_the_store(found, data["ratios"]["store_over_disk"])


def export_from_the_store(found: dict, ratios: dict) -> None:
    """--store: the same answers from an empty node reading moto, nothing big copied to it."""
    store = found["store"]
    assert set(store) == {"stream", "clip", "file", "range"} == set(ratios)
    for name, run in store.items():
        assert run.keys() >= EXPORT_HTTP_FIELDS | {"node_disk_added_mib"}, name
        assert run["status"] == found[name]["status"], (name, run)
        assert run["bytes"] == found[name]["bytes"], (name, run["bytes"], found[name]["bytes"])
        assert ratios[name]["first_byte_ms"] > 0
    for name in ("stream", "file", "range"):  # the clip leaves the clip itself in its cache
        assert store[name]["node_disk_added_mib"] < 1, (name, store[name])


def test_paired_measures_both_builds_in_each_round(results) -> None:
    data = results["paired"]
    (only,) = data["rounds"]
    assert only["A_all_advancing"] and only["B_all_advancing"], only
    assert only["A_cpu_percent_of_core"] > 0 and only["B_cpu_percent_of_core"] > 0, only
    assert only["cpu_b_over_a"] == data["median_cpu_b_over_a"] > 0
    # From media time 0 (ffmpeg's -progress): at least one 2 s segment of media, then listed.
    assert 1.5 < only["A_first_segment_from_media_s_p50"] < 10, only
    assert 1.5 < only["B_first_segment_from_media_s_p50"] < 10, only
    ours_over_b = only["A_cpu_percent_of_core"] / only["B_cpu_percent_of_core"]
    assert data["median_cpu_a_over_b"] == pytest.approx(ours_over_b, abs=0.001)
