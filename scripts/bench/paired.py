"""Two builds of our server side by side, in the same window: which one costs less CPU.

    git archive main | tar -x -C /tmp/a; git archive HEAD | tar -x -C /tmp/b
    .venv/bin/python scripts/bench/paired.py --a /tmp/a --b /tmp/b --streams 30 --rounds 3

On a shared 2-core machine the CPU of one server varies by ±10 % from one run to the next (the
same code measured 32 % and 42 % of a core at 60 streams an hour apart), which hides any change
worth a few per cent when builds are run one after the other. Here both run at once, each with
--streams pushers of ingest.py's test file, and each round measures both over the same window
(ingest.measure), so whatever else the machine does falls on both. B / A per round, and their
median, is the figure; the builds swap start order each round. --a-env / --b-env (KEY=VALUE,
repeatable) compare settings of one build.

``--b nginx-rtmp`` puts nginx-rtmp (its hls module, one worker, ingest.py's configuration) on
side B: our server against the peer in the same window, each with --streams pushers, instead
of one after the other as ingest.py runs them. B / A is then nginx-rtmp's CPU over ours; the
printout also gives A / B, the ratio #17's targets are stated in.

    .venv/bin/python scripts/bench/paired.py --a . --b nginx-rtmp --streams 60 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import ingest
from common import markdown_table, r


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--a-env/--b-env take KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


NGINX = Path("nginx-rtmp")


def _server(build: Path, env: dict[str, str], args: argparse.Namespace) -> common.BenchServer:
    if build == NGINX:
        return common.NginxRtmp(fragment=args.segment_duration, window=6)
    segment = {"PERISCOPE_HLS__SEGMENT_DURATION": f"{args.segment_duration:g}"}
    return common.OurServer({**segment, **env}, build)


async def _both(servers: list[common.BenchServer], args: argparse.Namespace, test_file: Path):
    return await asyncio.gather(
        *(ingest.measure(s, args.streams, args, test_file) for s in servers)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="directory holding build A's package")
    parser.add_argument(
        "--b", type=Path, required=True,
        help="directory holding build B's package, or nginx-rtmp for the peer",
    )  # fmt: skip
    parser.add_argument(
        "--install-nginx",
        action="store_true",
        help="with --b nginx-rtmp: apt-get install it when missing (needs root)",
    )
    parser.add_argument("--a-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--b-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--streams", type=int, default=30, help="pushers per server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--segment-duration", type=float, default=2.0)
    parser.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=common.RESULTS_DIR / "paired.json")
    args = parser.parse_args(argv)
    args.poll = "fs"
    if not 1 <= args.streams <= 100 or not 1 <= args.rounds <= 20:
        parser.error("--streams in [1, 100], --rounds in [1, 20]")
    if args.a == NGINX:
        parser.error("nginx-rtmp goes on side B (--b nginx-rtmp)")
    if args.b == NGINX:
        ok, why = common.nginx_available(args.install_nginx)
        if not ok:
            raise SystemExit(why)
    common.raise_fd_limit()
    test_file = common.ensure_test_file(args.cache)
    builds = {"A": (args.a, _env(args.a_env)), "B": (args.b, _env(args.b_env))}
    rounds = []
    for number in range(args.rounds):
        order = ["A", "B"] if number % 2 == 0 else ["B", "A"]
        servers = {name: _server(*builds[name], args) for name in order}
        with common.step(f"round {number + 1}: {args.streams} streams on each of A and B"):
            for name in order:
                servers[name].__enter__()
            try:
                results = asyncio.run(_both([servers[n] for n in order], args, test_file))
            finally:
                for name in order:
                    servers[name].__exit__(None, None, None)
        by_name = dict(zip(order, results, strict=True))
        rounds.append({
            "round": number + 1,
            **{f"{n}_{k}": by_name[n][k] for n in "AB" for k in (
                "cpu_percent_of_core", "all_advancing", "segment_latency_s_p50",
                "segment_latency_s_p99", "first_segment_s_p50",
                "first_segment_from_media_s_p50")},
            "cpu_b_over_a": r(by_name["B"]["cpu_percent_of_core"]
                              / by_name["A"]["cpu_percent_of_core"], 3),
        })  # fmt: skip
    median = statistics.median(x["cpu_b_over_a"] for x in rounds)
    headers = ["round", "A CPU %", "B CPU %", "B / A", "A seg lat p50/p99 ms",
               "B seg lat p50/p99 ms", "1st seg from media p50 A/B ms",
               "all advancing"]  # fmt: skip

    def ms(x: dict, side: str) -> str:
        p50, p99 = x[f"{side}_segment_latency_s_p50"], x[f"{side}_segment_latency_s_p99"]
        return "/".join("-" if v is None else str(round(v * 1000)) for v in (p50, p99))

    def first(x: dict) -> str:
        values = (x[f"{side}_first_segment_from_media_s_p50"] for side in "AB")
        return "/".join("-" if v is None else str(round(v * 1000)) for v in values)

    rows = [[x["round"], x["A_cpu_percent_of_core"], x["B_cpu_percent_of_core"],
             x["cpu_b_over_a"], ms(x, "A"), ms(x, "B"), first(x),
             x["A_all_advancing"] and x["B_all_advancing"]] for x in rounds]  # fmt: skip
    print(f"\n## paired: A = {args.a} {args.a_env}, B = {args.b} {args.b_env}\n")
    print(markdown_table(headers, rows, digits=3))
    print(f"\nmedian B / A CPU: {median:.3f}")
    a_over_b = statistics.median(
        x["A_cpu_percent_of_core"] / x["B_cpu_percent_of_core"] for x in rounds
    )
    if args.b == NGINX:
        print(f"median ours / nginx-rtmp CPU: {a_over_b:.3f}")
    common.write_results(args.json, "paired", {
        "machine": common.machine_info(),
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rounds": rounds, "median_cpu_b_over_a": median,
        "median_cpu_a_over_b": r(a_over_b, 3),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
