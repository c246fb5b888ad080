"""RTMP parsing benchmark: our sans-IO parser over a recorded real push, in 64 KiB reads.

    .venv/bin/python scripts/bench/rtmp_parse.py --capture-seconds 20

1. Record: a small TCP proxy on 127.0.0.1 sits between `ffmpeg -i FILE -t SECONDS -c copy -f flv`
   and our server and keeps every client->server byte (handshake, commands, media). ffmpeg runs
   without -re, so 20 s of media is recorded in a second or two; the bytes are the same as a
   real-time push.
2. Rebuild: the recorded chunk stream is reassembled into messages with ChunkReader and written
   again with ChunkWriter at chunk size 128 (the RTMP default, what a client that never sends Set
   Chunk Size uses) and at 4096 (what FFmpeg and OBS announce), behind the recorded handshake.
3. Time, for each chunk size, best of --repeats:
   * `ServerConnection.receive_data` over the whole push (handshake, connect, publish accepted,
     every media message turned into an event), in 64 KiB reads;
   * `ChunkReader.feed` alone over the chunk stream, in 64 KiB reads;
   * a trivial baseline over the same bytes: slice each 64 KiB read into chunk-size pieces and
     join them (the least any pure-Python parser must do), for scale.

nginx-rtmp has no equivalent in-process figure, so this script reports absolute numbers (µs per
chunk, MB/s) and the ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import markdown_table, r

READ_SIZE = 64 * 1024
HANDSHAKE_BYTES = 1 + 1536 + 1536  # C0 + C1 + C2
MAX_CAPTURE_BYTES = 256 * 1024 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bytearray | None):
    try:
        while data := await reader.read(READ_SIZE):
            if keep is not None and len(keep) < MAX_CAPTURE_BYTES:
                keep += data
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def record_push(server: common.OurServer, test_file: Path, seconds: float) -> bytes:
    captured = bytearray()
    tasks: list[asyncio.Task] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(common.LOOPBACK, server.rtmp_port)
        tasks.append(asyncio.create_task(_pump(reader, up_writer, captured)))
        tasks.append(asyncio.create_task(_pump(up_reader, writer, None)))

    proxy = await asyncio.start_server(on_client, common.LOOPBACK, 0)
    port = proxy.sockets[0].getsockname()[1]
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-i", str(test_file), "-t", f"{seconds:g}", "-c", "copy", "-f", "flv",
        f"rtmp://{common.LOOPBACK}:{port}/live/parse",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout=max(60.0, seconds * 3))
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SystemExit("ffmpeg did not finish pushing through the proxy in time") from None
    await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    proxy.close()
    await proxy.wait_closed()
    if process.returncode != 0:
        raise SystemExit(f"ffmpeg push failed ({process.returncode}): {err.decode()[-500:]}")
    return bytes(captured)


def rebuild(capture: bytes, chunk_size: int, rtmp) -> tuple[bytes, int, int, dict]:
    """The recorded push re-chunked at chunk_size: (bytes, end of publish, chunks, counts).

    The end of the publish command is returned so that the replay can answer it before feeding
    the media, as a live server does (media before the answer is dropped, by design).
    """
    chunk = rtmp["chunk"]
    reader = chunk.ChunkReader(max_chunk_size=1 << 24, max_message_size=1 << 24)
    messages = reader.feed(capture[HANDSHAKE_BYTES:])
    writer = chunk.ChunkWriter(128)
    out = bytearray(capture[:HANDSHAKE_BYTES])
    if chunk_size != 128:
        # Announce the size first, at the default size, like FFmpeg and OBS do right after
        # the handshake.
        out += writer.write(chunk.Message(2, 1, 0, 0, chunk_size.to_bytes(4, "big")))
        writer.chunk_size = chunk_size
    chunks = 1 if chunk_size != 128 else 0
    publish_end = 0
    counts = {"messages": 0, "video": 0, "audio": 0, "payload_bytes": 0}
    for message in messages:
        if message.type_id == 1:
            continue  # the recorded Set Chunk Size: replaced by ours above
        out += writer.write(message)
        if message.type_id == 20 and message.payload[:10] == b"\x02\x00\x07publish":
            publish_end = len(out)
        chunks += max(1, -(-len(message.payload) // chunk_size))
        counts["messages"] += 1
        counts["payload_bytes"] += len(message.payload)
        if message.type_id == 9:
            counts["video"] += 1
        elif message.type_id == 8:
            counts["audio"] += 1
    if not publish_end:
        raise SystemExit("the recorded push has no publish command")
    return bytes(out), publish_end, chunks, counts


def time_connection(data: bytes, publish_end: int, rtmp) -> tuple[float, int]:
    connection_module = rtmp["connection"]
    conn = connection_module.ServerConnection()
    media = 0
    # The reads are cut before the clock starts: making each read's bytes object is the socket's
    # (asyncio's) cost, not the parser's.
    reads = [data[:publish_end]] + [
        data[offset : offset + READ_SIZE] for offset in range(publish_end, len(data), READ_SIZE)
    ]
    t0 = time.perf_counter()
    for read in reads:
        for event in conn.receive_data(read):
            kind = type(event)
            if kind is connection_module.VideoReceived or kind is connection_module.AudioReceived:
                media += 1
            elif kind is connection_module.PublishRequested:
                conn.accept_publish(event.stream_id)
        conn.data_to_send()
    return time.perf_counter() - t0, media


def time_reader(data: bytes, rtmp) -> tuple[float, int]:
    reader = rtmp["chunk"].ChunkReader(max_chunk_size=1 << 24, max_message_size=1 << 24)
    messages = 0
    reads = [data[offset : offset + READ_SIZE] for offset in range(0, len(data), READ_SIZE)]
    t0 = time.perf_counter()
    for read in reads:
        messages += len(reader.feed(read))
    return time.perf_counter() - t0, messages


def time_baseline(data: bytes, chunk_size: int) -> float:
    """Slice each read into chunk-size pieces (skipping a 1-byte header) and join them."""
    step = chunk_size + 1
    reads = [data[offset : offset + READ_SIZE] for offset in range(0, len(data), READ_SIZE)]
    t0 = time.perf_counter()
    for block in reads:
        b"".join([block[i + 1 : i + step] for i in range(0, len(block), step)])
    return time.perf_counter() - t0


def best_and_median(fn, repeats: int) -> tuple[float, float, object]:
    times = []
    extra = None
    for _ in range(repeats):
        out = fn()
        if isinstance(out, tuple):
            seconds, extra = out
        else:
            seconds = out
        times.append(seconds)
    return min(times), statistics.median(times), extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture-seconds", type=float, default=20, help="media seconds recorded")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; best is reported")
    parser.add_argument("--chunk-sizes", default="128,4096")
    common.add_common_arguments(parser, "rtmp_parse")
    args = parser.parse_args(argv)
    if not 0 < args.capture_seconds <= 600 or not 1 <= args.repeats <= 5000:
        parser.error(
            "--capture-seconds in (0, 600], --repeats in [1, 5000] (thousands: for a profiler)"
        )
    sizes = [int(s) for s in args.chunk_sizes.split(",") if s.strip()]
    sys.path.insert(0, str(Path(args.server_src).resolve()))
    import periscope_ingest.rtmp.chunk as chunk_module
    import periscope_ingest.rtmp.connection as connection_module

    rtmp = {"chunk": chunk_module, "connection": connection_module}
    test_file = common.ensure_test_file(args.cache)
    machine = common.machine_info()

    with common.step(f"recording {args.capture_seconds:g} s of push through a proxy"):
        server = common.OurServer(src=args.server_src)
        with server:
            capture = asyncio.run(record_push(server, test_file, args.capture_seconds))
    if len(capture) <= HANDSHAKE_BYTES:
        raise SystemExit("nothing was recorded")

    runs = []
    for size in sizes:
        data, publish_end, chunks, counts = rebuild(capture, size, rtmp)
        stream_part = data[HANDSHAKE_BYTES:]
        with common.step(f"timing chunk size {size}: {len(data) / 1e6:.1f} MB, {chunks} chunks"):
            conn_best, conn_median, media = best_and_median(
                lambda d=data, p=publish_end: time_connection(d, p, rtmp), args.repeats
            )
            reader_best, _, messages = best_and_median(
                lambda d=stream_part: time_reader(d, rtmp), args.repeats
            )
            base_best, _, _ = best_and_median(
                lambda d=data, s=size: time_baseline(d, s), args.repeats
            )
        megabytes = len(data) / 1e6
        runs.append(
            {
                "chunk_size": size,
                "bytes": len(data),
                "chunks": chunks,
                "messages": counts["messages"],
                "media_messages": counts["video"] + counts["audio"],
                "media_events": media,
                "reader_messages": messages,
                "media_seconds": args.capture_seconds,
                "connection_s_best": r(conn_best, 4),
                "connection_s_median": r(conn_median, 4),
                "connection_us_per_chunk": r(conn_best / chunks * 1e6, 3),
                "connection_mb_per_s": r(megabytes / conn_best, 1),
                "connection_ms_per_stream_minute": r(conn_best / args.capture_seconds * 60e3, 1),
                "reader_s_best": r(reader_best, 4),
                "reader_us_per_chunk": r(reader_best / chunks * 1e6, 3),
                "reader_mb_per_s": r(megabytes / reader_best, 1),
                "baseline_s_best": r(base_best, 4),
                "baseline_us_per_chunk": r(base_best / chunks * 1e6, 3),
                "baseline_mb_per_s": r(megabytes / base_best, 1),
                "connection_vs_baseline": r(conn_best / base_best, 1),
                "reader_vs_baseline": r(reader_best / base_best, 1),
            }
        )

    print(
        f"\n## rtmp_parse: {args.capture_seconds:g} s of recorded push,"
        f" 64 KiB reads, best of {args.repeats}\n"
    )
    print(
        markdown_table(
            [
                "chunk size",
                "MB",
                "chunks",
                "receive_data µs/chunk",
                "receive_data MB/s",
                "ms per stream-minute",
                "ChunkReader µs/chunk",
                "ChunkReader MB/s",
                "baseline µs/chunk",
                "baseline MB/s",
                "receive_data / baseline",
            ],
            [
                [
                    x["chunk_size"],
                    round(x["bytes"] / 1e6, 1),
                    x["chunks"],
                    x["connection_us_per_chunk"],
                    x["connection_mb_per_s"],
                    x["connection_ms_per_stream_minute"],
                    x["reader_us_per_chunk"],
                    x["reader_mb_per_s"],
                    x["baseline_us_per_chunk"],
                    x["baseline_mb_per_s"],
                    x["connection_vs_baseline"],
                ]
                for x in runs
            ],
            digits=2,
        )
    )
    common.write_results(
        args.json,
        "rtmp_parse",
        {
            "machine": machine,
            "params": {
                "capture_seconds": args.capture_seconds,
                "repeats": args.repeats,
                "read_size": READ_SIZE,
                "chunk_sizes": sizes,
                "captured_bytes": len(capture),
                "test_file": str(test_file),
            },
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
