"""Load on ``recs serve``: latency at increasing request rates while events stream in, and intake.

    .venv/bin/python benchmarks/serve_load.py                       # in-process live state
    .venv/bin/python benchmarks/serve_load.py --live-url redis://127.0.0.1:6379/0

Publishes a synthetic site into a temporary SQLite database (``--users`` readers x 20 personal
items, ``--articles`` articles x 10 similar, 100 popular), starts ``recs serve`` as a subprocess on
a loopback port, then:

1. **Intake**: posts ``--intake-events`` events in batches of 100 from one client and from four,
   and reports events/s and the server's resident memory before and after (memory per million
   live events).
2. **Latency**: for each rate of ``--rates``, ``wrk`` (Debian's package; a Lua script paces each
   connection to the target rate and asks for random readers, a fifth of them unknown) requests
   ``GET /recommendations?k=20`` for ``--duration`` seconds while a thread posts
   ``--events-per-second`` events (batches every 100 ms). Reports the rate reached, p50/p95/p99
   latency and errors. wrk paces a closed loop, so a stalled server lowers the rate reached
   rather than queueing requests (the rate column shows when that happens).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from recs_pipeline.adapters.publishing import RecommendationBatch, SqlitePublisher

SITE = "bench"
T0 = 1_790_000_000_000

WRK_SCRIPT = r"""
local users = tonumber(os.getenv("BENCH_USERS"))
local pause = tonumber(os.getenv("BENCH_DELAY_MS"))
local counter = 0
local thread_seed = 1
setup = function(thread)
  thread:set("thread_seed", thread_seed)
  thread_seed = thread_seed + 1
end
init = function(args)
  math.randomseed(thread_seed * 7919)
end
request = function()
  counter = counter + 1
  local u = math.random(0, math.floor(users * 1.25))
  return wrk.format("GET", "/v1/sites/bench/recommendations?user_id=u" .. u .. "&k=20")
end
delay = function()
  return pause
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "JSON{\"requests\":%d,\"duration_us\":%d,\"connect\":%d,\"read\":%d,\"write\":%d," ..
    "\"status\":%d,\"timeout\":%d,\"p50\":%d,\"p95\":%d,\"p99\":%d,\"max\":%d}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""

SITE_YAML = """name: bench
start_date: 2026-01-01
events:
  format: snowplow
  location: /nonexistent
serving:
  warm_hours: 0
  max_events: 10000
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def session_ranker_params(articles: int, trees: int, seed: int) -> dict[str, Any]:
    """A session ranker trained (by the asset's own function) on sessions over the benchmark's
    articles, so requests pay what a published ranker costs: its features and its trees."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from recs_pipeline.core.site import ServingConfig
    from recs_pipeline.serving.session_ranker import (
        SESSION_RANKER_PARAM,
        session_ranker_as_of,
        session_ranker_document,
    )

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, articles + 1)
    weights /= weights.sum()
    day = dt.datetime.fromtimestamp(T0 / 1000, dt.UTC).date()
    start = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(), dt.UTC)
    rows = []
    for _ in range(8_000):
        user = f"u{rng.integers(0, 20_000)}"
        moment = start + dt.timedelta(seconds=float(rng.uniform(0, 4 * 86_000)))
        article = int(rng.choice(articles, p=weights))
        for _click in range(int(rng.integers(2, 5))):
            rows.append((user, f"a{article}", moment))
            moment += dt.timedelta(seconds=float(rng.uniform(20, 240)))
            jump = rng.random() < 0.6
            article = (article * 7 + 3) % articles if jump else int(rng.choice(articles, p=weights))
    views = pd.DataFrame(rows, columns=["user_id", "article_id", "ts"]).sort_values("ts")
    views["ts"] = pd.to_datetime(views["ts"], utc=True)
    config = ServingConfig(session_ranker_trees=trees)
    as_of = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    model = session_ranker_as_of(views, day, as_of, config, ZoneInfo("UTC"))
    if model is None:
        raise RuntimeError("the benchmark's session ranker did not train")
    return {SESSION_RANKER_PARAM: session_ranker_document(model)}


def publish(
    path: Path, users: int, articles: int, seed: int, user_params: dict[str, Any] | None = None
) -> None:
    rng = np.random.default_rng(seed)
    ids = np.array([f"a{i}" for i in range(articles)])
    weights = 1.0 / np.arange(1, articles + 1)
    weights /= weights.sum()
    user_rows = []
    for u in range(users):
        picks = rng.choice(articles, size=20, replace=False, p=weights)
        user_rows.append(
            pd.DataFrame(
                {
                    "source_entity_id": f"u{u}",
                    "rank": np.arange(1, 21),
                    "recommended_article_id": ids[picks],
                    "score": np.linspace(1, 0.05, 20),
                }
            )
        )
    similar = pd.DataFrame(
        {
            "source_entity_id": np.repeat(ids, 10),
            "rank": np.tile(np.arange(1, 11), articles),
            "recommended_article_id": ids[rng.integers(0, articles, size=articles * 10)],
            "score": np.tile(np.linspace(1, 0.1, 10), articles),
        }
    )
    similar = similar[similar["source_entity_id"] != similar["recommended_article_id"]]
    similar = similar.drop_duplicates(["source_entity_id", "recommended_article_id"])
    similar["rank"] = similar.groupby("source_entity_id").cumcount() + 1
    popular = pd.DataFrame(
        {
            "source_entity_id": "default",
            "rank": np.arange(1, 101),
            "recommended_article_id": ids[:100],
            "score": np.linspace(1, 0.01, 100),
        }
    )
    publisher = SqlitePublisher(path)
    import datetime as dt

    publisher.publish(
        SITE,
        dt.datetime.fromtimestamp(T0 / 1000, dt.UTC),
        [
            RecommendationBatch(
                "user", pd.concat(user_rows, ignore_index=True), params=user_params or {}
            ),
            RecommendationBatch("article", similar),
            RecommendationBatch("popular", popular),
        ],
    )


class EventMaker:
    """Clicks of random readers on Zipf-popular articles, event time 20 ms apart."""

    def __init__(self, users: int, articles: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.articles = articles
        self.ts = T0
        self.lock = threading.Lock()

    def batch(self, n: int) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for _ in range(n):
                self.ts += 20
                article = min(int(self.rng.paretovariate(1.1)) - 1, self.articles - 1)
                out.append(
                    {
                        "user_id": f"u{self.rng.randrange(self.users)}",
                        "article_id": f"a{article}",
                        "ts": self.ts,
                    }
                )
            return out


def intake(url: str, maker: EventMaker, events: int, clients: int) -> float:
    """Events per second posted in batches of 100 by ``clients`` threads."""
    per_client = events // clients
    batches = [[maker.batch(100) for _ in range(per_client // 100)] for _ in range(clients)]
    errors: list[str] = []

    def run(mine: list[list[dict[str, Any]]]) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for batch in mine:
                response = client.post(f"/v1/sites/{SITE}/events", json=batch)
                if response.status_code != 200 or response.json()["accepted"] != len(batch):
                    errors.append(response.text[:200])

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"intake errors: {errors[:3]}")
    return sum(len(b) for mine in batches for b in mine) / elapsed


def stream_events(
    url: str, maker: EventMaker, per_second: int, stop: threading.Event, stats: dict[str, Any]
) -> None:
    """``per_second`` events as a batch every 100 ms until stopped."""
    size = max(1, per_second // 10)
    sent = failed = 0
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        next_at = time.monotonic()
        while not stop.is_set():
            batch = maker.batch(size)
            t = time.perf_counter()
            try:
                response = client.post(f"/v1/sites/{SITE}/events", json=batch)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            sent += len(batch) if ok else 0
            failed += 0 if ok else 1
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))
    stats.update(
        sent=sent,
        failed=failed,
        post_p99_ms=1000 * float(np.percentile(latencies, 99)) if latencies else float("nan"),
    )


def run_wrk(url: str, rate: int, duration: int, users: int, script: Path) -> dict[str, Any]:
    connections = max(4, min(64, rate // 25))
    delay_ms = max(0, int(1000 * connections / rate) - 1)
    env = dict(os.environ, BENCH_USERS=str(users), BENCH_DELAY_MS=str(delay_ms))
    output = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "-s", str(script), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in output.splitlines() if x.startswith("JSON"))
    result: dict[str, Any] = json.loads(line[4:])
    result["connections"] = connections
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 250, 500, 750, 1000])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--events-per-second", type=int, default=200)
    parser.add_argument("--intake-events", type=int, default=200_000)
    parser.add_argument("--live-url", default=None, help="redis://... (default: in process)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--session-ranker-trees",
        type=int,
        default=0,
        help="publish a session ranker of this many trees (0: none, requests get the blend)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "sites").mkdir()
        (root / "sites" / "bench.yaml").write_text(SITE_YAML)
        script = root / "bench.lua"
        script.write_text(WRK_SCRIPT)
        began = time.perf_counter()
        ranker = (
            session_ranker_params(args.articles, args.session_ranker_trees, args.seed)
            if args.session_ranker_trees
            else None
        )
        publish(root / "recs.sqlite", args.users, args.articles, args.seed, ranker)
        print(f"published {args.users:,} reader lists in {time.perf_counter() - began:.1f}s")
        port = free_port()
        env = dict(
            os.environ,
            RECS_SITES_DIR=str(root / "sites"),
            RECS_DATABASE_URL=f"sqlite:///{root / 'recs.sqlite'}",
            RECS_LIVE_PREFIX=f"recs_bench:{os.getpid()}:",
        )
        env.pop("RECS_LIVE_URL", None)
        if args.live_url:
            env["RECS_LIVE_URL"] = args.live_url
        server = subprocess.Popen(
            [sys.executable, "-m", "recs_pipeline.cli", "serve", "--port", str(port), "--no-warm"],
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("recs serve did not start")
                time.sleep(0.2)
            maker = EventMaker(args.users, args.articles, args.seed)
            before = rss_mb(server.pid)
            one = intake(url, maker, args.intake_events // 2, 1)
            four = intake(url, maker, args.intake_events // 2, 4)
            after = rss_mb(server.pid)
            per_million = (after - before) / (args.intake_events / 1e6)
            print(
                f"intake, batches of 100: {one:,.0f} events/s (1 client), {four:,.0f} events/s "
                f"(4 clients); server RSS {before:.0f} -> {after:.0f} MB after "
                f"{args.intake_events:,} events ({per_million:.0f} MB per million live events)"
            )
            probe = httpx.get(
                f"{url}/v1/sites/{SITE}/recommendations", params={"user_id": "u1"}, timeout=5
            ).json()
            print(f"lists ranked by: {probe['ranked_by']}")
            print(
                "\n| target req/s | reached req/s | p50 ms | p95 ms | p99 ms | max ms | errors |"
                " events/s posted | event post p99 ms |"
            )
            print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
            for rate in args.rates:
                stop = threading.Event()
                stats: dict[str, Any] = {}
                streamer = threading.Thread(
                    target=stream_events,
                    args=(url, maker, args.events_per_second, stop, stats),
                )
                streamer.start()
                try:
                    result = run_wrk(url, rate, args.duration, args.users, script)
                finally:
                    stop.set()
                    streamer.join()
                seconds = result["duration_us"] / 1e6
                errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
                print(
                    f"| {rate} | {result['requests'] / seconds:,.0f} | {result['p50'] / 1000:.1f} "
                    f"| {result['p95'] / 1000:.1f} | {result['p99'] / 1000:.1f} "
                    f"| {result['max'] / 1000:.1f} | {errors} "
                    f"| {stats['sent'] / seconds:,.0f} | {stats['post_p99_ms']:.1f} |",
                    flush=True,
                )
            print(f"\nserver RSS at the end: {rss_mb(server.pid):.0f} MB")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
