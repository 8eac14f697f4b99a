"""Load on ``recs serve``: latency at increasing request rates while events stream in, and intake.

    .venv/bin/python benchmarks/serve_load.py                       # in-process live state
    .venv/bin/python benchmarks/serve_load.py --live-url redis://127.0.0.1:6379/0
    .venv/bin/python benchmarks/serve_load.py --live-url redis://127.0.0.1:6379/0 \
        --processes 1 2 --rates 250 500 750 1000 500 500          # 1 vs 2 processes, one Redis

Publishes a synthetic site into a temporary SQLite database (``--users`` readers x 20 personal
items, ``--articles`` articles x 10 similar, 100 popular), then for each count of
``--processes`` starts that many ``recs serve`` subprocesses on loopback ports (each loads the
published snapshot itself; with ``--live-url`` they share one Redis, each count under its own key
prefix, deleted at the end). For each count:

1. **Intake**: posts ``--intake-events`` events in batches of 100 from one client and from four,
   each client sending its batches round-robin across the processes, and reports events/s and the
   resident memory of each process before and after (memory per million live events).

Then, for each rate of ``--rates`` in turn (a rate given twice is measured twice) and each count:

2. **Latency**: one ``wrk`` per process (Debian's package; one thread, a Lua script paces each
   connection to the process's share of the target rate, ``rate / processes``, and asks for
   random readers, a fifth of them unknown) requests ``GET /recommendations?k=20`` for
   ``--duration`` seconds while a thread posts ``--events-per-second`` events (a batch every
   100 ms, round-robin across the processes). The balancing is client-side: no proxy in between.
   Reports the rate reached (summed over the wrks), p50/p95/p99/max latency of the merged
   distribution (each wrk writes its latency histogram, microsecond buckets), each process's own
   p99, errors, and where the CPU went during the window, in cores: the ``recs serve`` processes,
   Redis, the wrks, this script's event poster, and the whole machine (busy time of every core;
   the rest is other work on the machine). wrk paces a closed loop, so a stalled server lowers
   the rate reached rather than queueing requests (the rate column shows when that happens).

A rate measured more than once gets a last table of medians. ``--workers`` runs each count as
one ``recs serve --workers N`` on one port instead (one wrk at the whole rate; the kernel hands
each connection to a worker), the way a deployment on one machine runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import redis

from recs_pipeline.adapters.publishing import RecommendationBatch, SqlitePublisher
from recs_pipeline.serving.replay import free_port, wait_ready

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
  -- The latency histogram (microseconds): latency(i) is the i-th non-empty bucket and its count.
  local buckets = {}
  for i = 1, #latency do
    local value, count = latency(i)
    buckets[#buckets + 1] = string.format("[%d,%d]", value, count)
  end
  io.write(string.format(
    "JSON{\"requests\":%d,\"duration_us\":%d,\"connect\":%d,\"read\":%d,\"write\":%d," ..
    "\"status\":%d,\"timeout\":%d,\"p50\":%d,\"p95\":%d,\"p99\":%d,\"max\":%d," ..
    "\"histogram\":[%s]}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    table.concat(buckets, ",")))
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy (not idle, not waiting on I/O) so far."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RedisCpu:
    """CPU time of the Redis server (every thread), or nothing without Redis."""

    def __init__(self, url: str | None) -> None:
        self.client = redis.Redis.from_url(url) if url else None

    def seconds(self) -> float:
        if self.client is None:
            return 0.0
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentile(histogram: dict[int, int], p: float) -> float:
    """The value at percentile ``p`` of a histogram, as wrk computes it from its own."""
    if not histogram:
        return float("nan")
    values = np.array(sorted(histogram))
    counts = np.array([histogram[v] for v in values])
    rank = round(p / 100 * counts.sum() + 0.5)
    return float(values[min(int(np.searchsorted(np.cumsum(counts), rank)), len(values) - 1)])


def spawned_children(pid: int) -> list[int]:
    """The multiprocessing-spawned children of ``pid`` (uvicorn's workers)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


class Group:
    """``processes`` ``recs serve`` processes sharing one live store: on as many loopback ports
    (balanced by this client), or with ``workers`` as one ``recs serve --workers N`` on one port
    (balanced by the kernel, connection by connection)."""

    def __init__(self, processes: int, env: dict[str, str], prefix: str, workers: bool) -> None:
        self.processes = processes
        self.prefix = prefix
        self.servers: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.pids: list[int] = []
        command = [sys.executable, "-m", "recs_pipeline.cli", "serve", "--no-warm"]
        if workers:
            command += ["--workers", str(processes)]
        for _ in range(1 if workers else processes):
            port = free_port()
            self.servers.append(
                subprocess.Popen(
                    [*command, "--port", str(port)], env=dict(env, RECS_LIVE_PREFIX=prefix)
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")
        self.workers = workers

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        for server, url in zip(self.servers, self.urls, strict=True):
            wait_ready(server, url, deadline)
        if not self.workers or self.processes == 1:
            # `recs serve --workers 1` is the one process itself.
            self.pids = [server.pid for server in self.servers]
            return
        while len(self.pids) < self.processes:
            if time.monotonic() > deadline:
                raise RuntimeError("recs serve --workers: not every worker started")
            time.sleep(0.2)
            self.pids = spawned_children(self.servers[0].pid)
        # The supervising parent last: its memory and (little) CPU count too.
        self.pids.append(self.servers[0].pid)

    def rss(self) -> list[float]:
        return [rss_mb(pid) for pid in self.pids]

    def cpu(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def intake(urls: list[str], maker: EventMaker, events: int, clients: int) -> float:
    """Events per second posted in batches of 100 by ``clients`` threads, each sending its
    batches round-robin across ``urls``."""
    per_client = events // clients
    batches = [[maker.batch(100) for _ in range(per_client // 100)] for _ in range(clients)]
    errors: list[str] = []

    def run(index: int, mine: list[list[dict[str, Any]]]) -> None:
        with httpx.Client(timeout=30) as client:
            for number, batch in enumerate(mine):
                url = urls[(index + number) % len(urls)]
                response = client.post(f"{url}/v1/sites/{SITE}/events", json=batch)
                if response.status_code != 200 or response.json()["accepted"] != len(batch):
                    errors.append(response.text[:200])

    threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(batches)]
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
    urls: list[str],
    maker: EventMaker,
    per_second: int,
    stop: threading.Event,
    stats: dict[str, Any],
) -> None:
    """``per_second`` events as a batch every 100 ms, round-robin across ``urls``, until
    stopped. Batches leave on time however slow the answers (up to 8 in flight), so events keep
    arriving at the rate asked while the servers are saturated."""
    size = max(1, per_second // 10)
    lock = threading.Lock()
    counts = {"sent": 0, "failed": 0}
    latencies: list[float] = []

    def post(client: httpx.Client, url: str, batch: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        try:
            ok = client.post(f"{url}/v1/sites/{SITE}/events", json=batch).status_code == 200
        except httpx.HTTPError:
            ok = False
        with lock:
            latencies.append(time.perf_counter() - t)
            counts["sent" if ok else "failed"] += len(batch) if ok else 1

    number = 0
    with (
        httpx.Client(timeout=10, limits=httpx.Limits(max_connections=8)) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        next_at = time.monotonic()
        while not stop.is_set():
            pool.submit(post, client, urls[number % len(urls)], maker.batch(size))
            number += 1
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))
    stats.update(
        sent=counts["sent"],
        failed=counts["failed"],
        post_p99_ms=1000 * float(np.percentile(latencies, 99)) if latencies else float("nan"),
    )


def start_wrk(
    url: str, rate: float, duration: int, users: int, script: Path
) -> subprocess.Popen[str]:
    """One paced wrk (one thread) asking ``url`` for ``rate`` requests/s."""
    connections = max(4, min(64, int(rate // 25)))
    delay_ms = max(0, int(1000 * connections / rate) - 1)
    env = dict(os.environ, BENCH_USERS=str(users), BENCH_DELAY_MS=str(delay_ms))
    return subprocess.Popen(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "-s", str(script), url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_wrk(wrk: subprocess.Popen[str]) -> dict[str, Any]:
    """The wrk's result (its JSON line). Reaped here, its CPU time joins this process's
    children's usage."""
    output, error = wrk.communicate()
    if wrk.returncode != 0:
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {error[:500]}")
    line = next(x for x in output.splitlines() if x.startswith("JSON"))
    result: dict[str, Any] = json.loads(line[4:])
    return result


def measure(
    group: Group,
    maker: EventMaker,
    rate: int,
    args: argparse.Namespace,
    script: Path,
    redis_cpu: RedisCpu,
) -> dict[str, Any]:
    """One rate against one group: merged latency, rate reached, errors, CPU by party."""
    stop = threading.Event()
    stats: dict[str, Any] = {}
    streamer = threading.Thread(
        target=stream_events, args=(group.urls, maker, args.events_per_second, stop, stats)
    )
    servers_before = group.cpu()
    redis_before = redis_cpu.seconds()
    machine_before = machine_busy_seconds()
    self_before = self_cpu_seconds()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_before = children.ru_utime + children.ru_stime
    began = time.perf_counter()
    streamer.start()
    try:
        wrks = [
            start_wrk(url, rate / len(group.urls), args.duration, args.users, script)
            for url in group.urls
        ]
        results = [finish_wrk(wrk) for wrk in wrks]
    finally:
        stop.set()
        streamer.join()
    elapsed = time.perf_counter() - began
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk's histograms, as its own percentiles read them: with its correction for coordinated
    # omission (a response slower than twice a connection's mean interval adds the samples of
    # the requests it held back), so they hold a few more samples than requests when it stalls.
    histogram: dict[int, int] = {}
    for result in results:
        for value, count in result["histogram"]:
            histogram[value] = histogram.get(value, 0) + count
    servers = [a - b for a, b in zip(group.cpu(), servers_before, strict=True)]
    return {
        "processes": group.processes,
        "rate": rate,
        "reached": sum(r["requests"] / (r["duration_us"] / 1e6) for r in results),
        "p50": percentile(histogram, 50) / 1000,
        "p95": percentile(histogram, 95) / 1000,
        "p99": percentile(histogram, 99) / 1000,
        "max": max(r["max"] for r in results) / 1000,
        "process_p99": [r["p99"] / 1000 for r in results],
        "errors": sum(
            r[k] for r in results for k in ("connect", "read", "write", "status", "timeout")
        ),
        "events": stats["sent"] / elapsed,
        "post_p99": stats["post_p99_ms"],
        "cpu_servers": sum(servers) / elapsed,
        "cpu_redis": (redis_cpu.seconds() - redis_before) / elapsed,
        "cpu_wrk": (children.ru_utime + children.ru_stime - children_before) / elapsed,
        "cpu_client": (self_cpu_seconds() - self_before) / elapsed,
        "cpu_machine": (machine_busy_seconds() - machine_before) / elapsed,
    }


HEADER = (
    "| processes | target req/s | reached | p50 ms | p95 ms | p99 ms | max ms | p99 ms by process"
    " | errors | events/s posted | event post p99 ms | CPU (cores): servers | Redis | wrk"
    " | poster | machine | server CPU ms per request |\n"
    "|--:|--:|--:|--:|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def cpu_per_request(cores: float, requests_per_second: float) -> float:
    """Milliseconds of CPU per request answered."""
    return 1000 * cores / requests_per_second if requests_per_second else float("nan")


def row(m: dict[str, Any]) -> str:
    by_process = " / ".join(f"{x:.1f}" for x in m["process_p99"])
    return (
        f"| {m['processes']} | {m['rate']} | {m['reached']:,.0f} | {m['p50']:.1f} "
        f"| {m['p95']:.1f} | {m['p99']:.1f} | {m['max']:.1f} | {by_process} | {m['errors']} "
        f"| {m['events']:,.0f} | {m['post_p99']:.1f} | {m['cpu_servers']:.2f} "
        f"| {m['cpu_redis']:.2f} | {m['cpu_wrk']:.2f} | {m['cpu_client']:.2f} "
        f"| {m['cpu_machine']:.2f} | {cpu_per_request(m['cpu_servers'], m['reached']):.1f} |"
    )


def medians(measurements: list[dict[str, Any]]) -> list[str]:
    """Median rows of every (processes, rate) measured more than once, with each run's p99."""
    keys = sorted({(m["processes"], m["rate"]) for m in measurements})
    lines = []
    for processes, rate in keys:
        runs = [m for m in measurements if (m["processes"], m["rate"]) == (processes, rate)]
        if len(runs) < 2:
            continue

        def median(name: str, runs: list[dict[str, Any]] = runs) -> float:
            return float(np.median([m[name] for m in runs]))

        p99s = ", ".join(f"{m['p99']:.1f}" for m in runs)
        lines.append(
            f"| {processes} | {rate} | {len(runs)} | {median('reached'):,.0f} "
            f"| {median('p50'):.1f} | {median('p95'):.1f} | {median('p99'):.1f} ({p99s}) "
            f"| {median('errors'):.0f} | {median('post_p99'):.1f} | {median('cpu_servers'):.2f} "
            f"| {median('cpu_redis'):.2f} | {median('cpu_machine'):.2f} "
            f"| {cpu_per_request(median('cpu_servers'), median('reached')):.1f} |"
        )
    if not lines:
        return []
    return [
        "\nmedians:\n",
        "| processes | target req/s | runs | reached | p50 ms | p95 ms | p99 ms (each run) "
        "| errors | event post p99 ms | CPU: servers | Redis | machine "
        "| server CPU ms per request |",
        "|--:|--:|--:|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|",
        *lines,
    ]


def delete_prefix(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    deleted = 0
    keys: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        keys.append(key)
        if len(keys) >= 1000:
            deleted += int(client.delete(*keys))
            keys = []
    if keys:
        deleted += int(client.delete(*keys))
    return deleted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[100, 250, 500, 750, 1000],
        help="target requests/s, in this order (a rate given twice is measured twice)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="counts of `recs serve` processes to compare (more than 1 needs --live-url)",
    )
    parser.add_argument(
        "--workers",
        action="store_true",
        help="run each count as one `recs serve --workers N` on one port (the kernel balances "
        "connections) instead of N processes on N ports balanced by this client",
    )
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
    if max(args.processes) > 1 and not args.live_url:
        # In-process live state is per process: every process would have to get every event.
        print("several processes share live state only in Redis: pass --live-url", file=sys.stderr)
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
        env = dict(
            os.environ,
            RECS_SITES_DIR=str(root / "sites"),
            RECS_DATABASE_URL=f"sqlite:///{root / 'recs.sqlite'}",
        )
        env.pop("RECS_LIVE_URL", None)
        if args.live_url:
            env["RECS_LIVE_URL"] = args.live_url
        groups: list[Group] = []
        makers: dict[int, EventMaker] = {}
        try:
            for processes in dict.fromkeys(args.processes):
                prefix = f"recs_bench:{os.getpid()}:{processes}:"
                group = Group(processes, env, prefix, args.workers)
                groups.append(group)
                group.wait_ready()
                # The same event stream for every count, so their live states compare.
                maker = makers[processes] = EventMaker(args.users, args.articles, args.seed)
                before = group.rss()
                one = intake(group.urls, maker, args.intake_events // 2, 1)
                four = intake(group.urls, maker, args.intake_events // 2, 4)
                after = group.rss()
                per_million = (sum(after) - sum(before)) / (args.intake_events / 1e6)
                spawned = args.workers and processes > 1
                order = " (the workers, then their parent)" if spawned else ""
                print(
                    f"{processes} process(es), intake in batches of 100: {one:,.0f} events/s "
                    f"(1 client), {four:,.0f} events/s (4 clients); RSS by process{order} "
                    f"{' + '.join(f'{x:.0f}' for x in before)} = {sum(before):.0f} MB -> "
                    f"{' + '.join(f'{x:.0f}' for x in after)} = {sum(after):.0f} MB after "
                    f"{args.intake_events:,} events ({per_million:.0f} MB per million live "
                    "events, all processes)",
                    flush=True,
                )
                probe = httpx.get(
                    f"{group.urls[-1]}/v1/sites/{SITE}/recommendations",
                    params={"user_id": "u1"},
                    timeout=5,
                ).json()
                print(f"lists ranked by: {probe['ranked_by']}")
            redis_cpu = RedisCpu(args.live_url)
            print("\n" + HEADER)
            measurements = []
            for rate in args.rates:
                for group in groups:
                    m = measure(group, makers[group.processes], rate, args, script, redis_cpu)
                    measurements.append(m)
                    print(row(m), flush=True)
            print("\n".join(medians(measurements)))
            for group in groups:
                rss = group.rss()
                print(
                    f"\n{group.processes} process(es), RSS at the end: "
                    f"{' + '.join(f'{x:.0f}' for x in rss)} = {sum(rss):.0f} MB",
                    end="",
                )
            print()
        finally:
            for group in groups:
                group.stop()
            if args.live_url:
                for group in groups:
                    delete_prefix(args.live_url, group.prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
