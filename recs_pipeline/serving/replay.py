"""``recs replay``: evaluation.md's session protocol through the real HTTP API.

For each day D: start ``recs serve`` (a subprocess, empty live state, the serving database of
``--database-url``), post the clicks of ``--warm-hours`` before D's start, then walk D in time
order: before each sampled session's **last** click, post every click older than that moment and
ask ``GET /recommendations`` for the session's reader; the truth is that last click's article.
Sessions are the source's own (a ``session_id`` column of a delimited source, else 30 minutes of
inactivity); consecutive repeated clicks are collapsed; sessions with fewer than 2 clicks, or
that start on another day, are skipped.

Baselines are computed in the same run from a shadow in-process live store fed exactly the
posted events: live ``pop_decay`` (the site's first half-life), co-visitation from the session's
last click filled with it, a session kNN (V-SkNN, k=100, sessions of the last 24 hours) filled
with it, the 2-hour-old popularity list a batch-only system serves (1-hour half-life, frozen at
each 2-hour boundary), each excluding what the reader read.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recs_pipeline import settings
from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.publishing import RecommendationBatch, SqlitePublisher
from recs_pipeline.core.asset_names import RAW_EVENTS
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.serving.app import live_settings
from recs_pipeline.serving.live import LiveEvent, LiveSettings, MemoryLiveStore
from recs_pipeline.serving.scoring import HOUR_MS, blend, combine_neighbours, fill
from recs_pipeline.serving.session_ranker import (
    SESSION_RANKER_PARAM,
    session_ranker_as_of,
    session_ranker_document,
)
from recs_pipeline.serving.sessions import K, Query, Scores, gap_sessions, session_queries

# -- clicks ----------------------------------------------------------------------------------


def load_clicks(site: SiteConfig, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Columns ``user_id, article_id, ts_ms, session_id`` (str, str, int64, str|None), sorted.

    A delimited source is read straight from its landing files (its ``session_id`` column is
    kept when there is one); other sources from the lake's ``raw_events`` page views.
    """
    events = site.events
    if events.format == "csv" and events.columns is not None and events.columns.article_id:
        cols = events.columns
        assert cols.article_id is not None
        folder = events.resolved_location()
        files = sorted(folder.glob(events.files or "*.csv*"))
        if not files:
            raise FileNotFoundError(f"no {events.files} files under {folder}")
        tables = []
        for path in files:
            table = pacsv.read_csv(path)
            names = {cols.user_id: "user_id", cols.article_id: "article_id"}
            names[cols.timestamp] = "ts"
            if "session_id" in table.column_names:
                names["session_id"] = "session_id"
            table = table.select(list(names)).rename_columns(list(names.values()))
            unit = {"s": 1000, "ms": 1, "us": 1e-3, "ns": 1e-6}[events.timestamp_unit]
            ts = pc.cast(pc.multiply(pc.cast(table["ts"], pa.float64()), unit), pa.int64())
            table = table.set_column(table.column_names.index("ts"), "ts", ts)
            mask = pc.and_(pc.greater_equal(ts, start_ms), pc.less(ts, end_ms))
            if pc.any(mask).as_py():
                tables.append(table.filter(mask))
        if not tables:
            return pd.DataFrame(
                {
                    "user_id": pd.Series(dtype=str),
                    "article_id": pd.Series(dtype=str),
                    "ts_ms": pd.Series(dtype="int64"),
                    "session_id": pd.Series(dtype=str),
                }
            )
        frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    else:
        lake = lake_from_url(settings.lake_url())
        first = dt.datetime.fromtimestamp(start_ms / 1000, site.tz).date()
        last = dt.datetime.fromtimestamp(end_ms / 1000, site.tz).date()
        days = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        raw = lake.read_partitions(site.name, RAW_EVENTS, days)
        if raw is None or raw.empty:
            raise FileNotFoundError(f"no raw_events of {site.name} for {days[0]}..{days[-1]}")
        raw = raw[raw["event_name"].astype(str) == "page_view"]
        ts = pd.to_datetime(raw["ts"], utc=True).dt.as_unit("ms").astype("int64")
        frame = pd.DataFrame(
            {"user_id": raw["user_id"], "article_id": raw["article_id"], "ts": ts.to_numpy()}
        )
        frame = frame[(frame["ts"] >= start_ms) & (frame["ts"] < end_ms)]
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str).to_numpy(),
            "article_id": frame["article_id"].astype(str).to_numpy(),
            "ts_ms": frame["ts"].astype("int64").to_numpy(),
            "session_id": frame["session_id"].astype(str).to_numpy()
            if "session_id" in frame.columns
            else None,
        }
    )
    out = out.sort_values(["ts_ms", "user_id"], kind="stable", ignore_index=True)
    if out["session_id"].isna().all():
        out["session_id"] = gap_sessions(out)
    return out


# -- the server ------------------------------------------------------------------------------


def wait_ready(
    process: subprocess.Popen[Any], url: str, deadline: float, path: str = "/readyz"
) -> None:
    """Poll ``url + path`` until it answers 200; RuntimeError when ``process`` exits first or
    the monotonic ``deadline`` passes."""
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"recs serve on {url} exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"recs serve on {url} did not answer {path} in time")
        time.sleep(0.2)


class ServeProcess:
    """``recs serve`` in a subprocess on a free loopback port, until closed."""

    def __init__(self, site: str, database_url: str, port: int) -> None:
        env = dict(os.environ, RECS_DATABASE_URL=database_url)
        env.pop("RECS_LIVE_URL", None)
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "recs_pipeline.cli",
                "serve",
                "--site",
                site,
                "--port",
                str(port),
                "--no-warm",
            ],
            env=env,
        )
        wait_ready(self.process, self.url, time.monotonic() + 60, "/healthz")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the replay ------------------------------------------------------------------------------


class SessionKnn:
    """V-SkNN over the sessions of the last ``horizon_ms`` (Ludewig & Jannach's session kNN).

    A session's items weigh by position (the last 1, the first 1/n); a past session's
    similarity is the sum of the weights of the items it shares; the ``k`` most similar of the
    ``sample`` most recent sessions sharing an item vote for their items with that similarity.
    """

    def __init__(self, k: int = 100, sample: int = 500, horizon_ms: int = 24 * HOUR_MS) -> None:
        self.k = k
        self.sample = sample
        self.horizon_ms = horizon_ms
        self.items: dict[str, dict[str, None]] = {}
        self.last_ts: dict[str, int] = {}
        self.by_item: dict[str, list[str]] = {}

    def add(self, session_id: str, article_id: str, ts_ms: int) -> None:
        items = self.items.setdefault(session_id, {})
        if article_id not in items:
            items[article_id] = None
            self.by_item.setdefault(article_id, []).append(session_id)
        self.last_ts[session_id] = max(ts_ms, self.last_ts.get(session_id, ts_ms))

    def scores(self, session_id: str, clicks: Sequence[str], now_ms: int) -> dict[str, float]:
        if not clicks:
            return {}
        weights: dict[str, float] = {}
        for position, article in enumerate(clicks, start=1):
            weights[article] = position / len(clicks)
        candidates: set[str] = set()
        for article in weights:
            for other in reversed(self.by_item.get(article, [])[-self.sample :]):
                if other != session_id and self.last_ts[other] >= now_ms - self.horizon_ms:
                    candidates.add(other)
        similar = sorted(
            ((sum(weights.get(a, 0.0) for a in self.items[other]), other) for other in candidates),
            reverse=True,
        )[: self.k]
        votes: dict[str, float] = {}
        for similarity, other in similar:
            for article in self.items[other]:
                votes[article] = votes.get(article, 0.0) + similarity
        return votes


@dataclass
class Baselines:
    """The same run's baselines from a shadow store fed exactly what the API was posted."""

    site: str
    settings: LiveSettings
    store: MemoryLiveStore = field(init=False)
    batch_popular: list[tuple[str, float]] = field(default_factory=list)
    batch_boundary: int | None = None
    knn: SessionKnn = field(default_factory=SessionKnn)

    def __post_init__(self) -> None:
        shadow = LiveSettings(
            half_lives_ms=(self.settings.half_lives_ms[0], HOUR_MS),
            covisit_window_ms=self.settings.covisit_window_ms,
            covisit_half_life_ms=self.settings.covisit_half_life_ms,
            covisit_backward_weight=self.settings.covisit_backward_weight,
            recent_clicks=self.settings.recent_clicks,
        )
        self.settings = shadow
        self.store = MemoryLiveStore({self.site: shadow})

    def apply(self, events: Sequence[LiveEvent]) -> None:
        self.store.apply(self.site, events)
        for e in events:
            self.knn.add(e.session_id or e.user_id, e.article_id, e.ts_ms)

    def at(self, ts_ms: int) -> None:
        """Freeze the batch list at each 2-hour boundary passed (from what came before it)."""
        boundary = ts_ms - ts_ms % (2 * HOUR_MS)
        if boundary != self.batch_boundary:
            self.batch_boundary = boundary
            self.batch_popular = self.store.popular(self.site, HOUR_MS, 500)

    def lists(self, query: Query) -> dict[str, list[str]]:
        read = self.store.read(self.site, query.user_id)
        pop = self.store.popular(self.site, self.settings.half_lives_ms[0], K + len(read), read)
        covisit = combine_neighbours(
            [(1.0, self.store.neighbours(self.site, query.last_before, 200))]
        )
        ranked_covisit = sorted(covisit.items(), key=lambda kv: (-kv[1], kv[0]))
        session = [
            c.article_id
            for c in self.store.clicks(self.site, query.user_id)
            if c.session_id == query.session_id
        ]
        votes = self.knn.scores(query.session_id, session, query.ts_ms)
        ranked_knn = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        blended = blend(dict(pop), covisit, [], excluded=read)
        return {
            "blend (the API without a session ranker)": [s.article_id for s in blended][:K],
            "sknn (V-SkNN, k=100, 24 h)+pop": [
                s.article_id
                for s in fill(K, [("session", ranked_knn), ("live", pop)], excluded=read)
            ],
            "pop_decay": [a for a, _ in pop][:K],
            "covisit_last_click+pop": [
                s.article_id
                for s in fill(K, [("session", ranked_covisit), ("live", pop)], excluded=read)
            ],
            "batch_pop_2h_old": [a for a, _ in self.batch_popular if a not in read][:K],
        }


def day_span(site: SiteConfig, day: dt.date) -> tuple[int, int]:
    """The day's start and end in the site's time zone, ms since the epoch."""
    start = dt.datetime.combine(day, dt.time(), site.tz)
    end = start + dt.timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def publish_day(
    site: SiteConfig,
    day: dt.date,
    publisher: SqlitePublisher,
    progress: Callable[[str], None] = print,
    with_ranker: bool = True,
) -> dict[str, Any]:
    """Publish what the batch serves as of ``day``'s start: the popular list (1-hour half-life)
    and, in its params, the session ranker of the day before (``session_ranker_as_of``, the
    function the ``session_ranker`` asset calls) when it beat the blend on that day's sessions.
    Returns the ranker's info (empty without one)."""
    config = site.serving
    day_start, _ = day_span(site, day)
    first = day - dt.timedelta(days=config.session_ranker_days + 2)
    clicks = load_clicks(site, day_span(site, first)[0], day_start)
    views = pd.DataFrame(
        {
            "user_id": clicks["user_id"],
            "article_id": clicks["article_id"],
            "ts": pd.to_datetime(clicks["ts_ms"], unit="ms", utc=True),
        }
    )
    as_of = dt.datetime.fromtimestamp(day_start / 1000, dt.UTC)
    began = time.perf_counter()
    model = (
        session_ranker_as_of(views, day - dt.timedelta(days=1), as_of, config, site.tz)
        if with_ranker
        else None
    )
    info: dict[str, Any] = {} if model is None else dict(model.info)
    ages = (day_start - clicks["ts_ms"].to_numpy()) / HOUR_MS
    weights = pd.Series(np.exp2(-ages), index=clicks["article_id"].to_numpy())
    top = weights.groupby(level=0).sum().sort_values(ascending=False).head(100)
    popular = pd.DataFrame(
        {
            "source_entity_id": "default",
            "rank": np.arange(1, len(top) + 1),
            "recommended_article_id": top.index.astype(str),
            "score": top.to_numpy(),
        }
    )
    if popular.empty:
        progress(f"{day}: no clicks before the day: nothing published (live state answers)")
        return info
    params: dict[str, Any] = {}
    if model is not None and model.info.get("beats_blend"):
        params[SESSION_RANKER_PARAM] = session_ranker_document(model)
    publisher.publish(site.name, as_of, [RecommendationBatch("popular", popular, params=params)])
    validation = info.get("validation", {})
    progress(
        f"{day}: session ranker of {day - dt.timedelta(days=1)} "
        + (
            f"trained on {info.get('requests_with_truth', 0):,} requests in "
            f"{time.perf_counter() - began:.0f}s, held out NDCG@20 "
            f"{validation.get('session_ranker', {}).get('NDCG@20', 0):.3f} vs blend "
            f"{validation.get('blend', {}).get('NDCG@20', 0):.3f}: "
            + ("published" if SESSION_RANKER_PARAM in params else "not published (the blend)")
            if model is not None
            else "not trained (too little traffic)"
        )
    )
    return info


def replay_day(
    site: SiteConfig,
    day: dt.date,
    database_url: str,
    warm_hours: float,
    share: float | None,
    seed: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Scores]:
    """One day's scores; ``share`` of its sessions (sampled with ``seed``), None: all."""
    day_start, day_end = day_span(site, day)
    began = time.perf_counter()
    clicks = load_clicks(site, day_start - int(warm_hours * HOUR_MS), day_end + 6 * HOUR_MS)
    queries = session_queries(clicks, day_start, day_end)
    if share is not None and share < 1.0:
        count = max(1, round(share * len(queries)))
        queries = sorted(
            random.Random(seed).sample(queries, count), key=lambda q: (q.ts_ms, q.user_id)
        )
    progress(
        f"{day}: {len(clicks):,} clicks loaded, {len(queries):,} sessions to score "
        f"({time.perf_counter() - began:.1f}s)"
    )
    scores: dict[str, Scores] = {}
    baselines = Baselines(site.name, live_settings(site.serving))
    server = ServeProcess(site.name, database_url, free_port())
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            users = clicks["user_id"].to_numpy()
            articles = clicks["article_id"].to_numpy()
            stamps = clicks["ts_ms"].to_numpy()
            sessions = clicks["session_id"].to_numpy()
            position = 0
            posted = 0
            timer = time.perf_counter()

            def post_until(limit_ms: int) -> None:
                nonlocal position, posted
                end = int(np.searchsorted(stamps, limit_ms, side="left"))
                for chunk_start in range(position, end, 1_000):
                    chunk = range(chunk_start, min(end, chunk_start + 1_000))
                    items = [
                        {
                            "user_id": str(users[i]),
                            "article_id": str(articles[i]),
                            "ts": int(stamps[i]),
                            "session_id": str(sessions[i]),
                        }
                        for i in chunk
                    ]
                    answer = client.post(f"/v1/sites/{site.name}/events", json=items)
                    answer.raise_for_status()
                    body = answer.json()
                    if body["rejected"]:
                        raise RuntimeError(f"events rejected: {body['rejected'][:3]}")
                    baselines.apply(
                        [
                            LiveEvent(
                                str(users[i]), str(articles[i]), int(stamps[i]), str(sessions[i])
                            )
                            for i in chunk
                        ]
                    )
                    posted += len(items)
                position = max(position, end)

            asked = 0
            request_seconds = 0.0
            for query in queries:
                post_until(query.ts_ms)
                baselines.at(query.ts_ms)
                t = time.perf_counter()
                answer = client.get(
                    f"/v1/sites/{site.name}/recommendations",
                    params={"user_id": query.user_id, "k": K},
                )
                request_seconds += time.perf_counter() - t
                answer.raise_for_status()
                served = [item["article_id"] for item in answer.json()["items"]]
                scores.setdefault("api (served)", Scores()).add(served, query.truth)
                for method, ranked in baselines.lists(query).items():
                    scores.setdefault(method, Scores()).add(ranked, query.truth)
                asked += 1
            progress(
                f"{day}: posted {posted:,} events, asked {asked:,} lists in "
                f"{time.perf_counter() - timer:.0f}s "
                f"(mean request {1000 * request_seconds / max(asked, 1):.2f} ms)"
            )
    finally:
        server.close()
    return scores


def replay(
    site: SiteConfig,
    days: Sequence[dt.date],
    database_url: str | None = None,
    warm_hours: float = 24.0,
    sample: int | None = None,
    seed: int = 7,
    session_ranker: bool = True,
) -> dict[str, dict[str, float]]:
    """Session-protocol means over the days (session-weighted), one row per method."""
    with tempfile.TemporaryDirectory() as scratch:
        publisher = None
        if database_url is None:
            path = Path(scratch) / "serving.sqlite"
            publisher = SqlitePublisher(path)  # each day publishes what the batch serves
            database_url = f"sqlite:///{path}"
        share = None
        if sample is not None:
            # Sessions sampled uniformly over all days (a busier day weighs more).
            sessions = 0
            for day in days:
                day_start, day_end = day_span(site, day)
                clicks = load_clicks(site, day_start, day_end + 6 * HOUR_MS)
                sessions += len(session_queries(clicks, day_start, day_end))
            share = min(1.0, sample / max(sessions, 1))
        total: dict[str, Scores] = {}
        for day in days:
            if publisher is not None:
                publish_day(site, day, publisher, with_ranker=session_ranker)
            for method, s in replay_day(site, day, database_url, warm_hours, share, seed).items():
                merged = total.setdefault(method, Scores())
                merged.n += s.n
                for key, value in s.sums.items():
                    merged.sums[key] = merged.sums.get(key, 0.0) + value
    return {method: {"sessions": float(s.n), **s.means()} for method, s in total.items()}


def markdown(results: dict[str, dict[str, float]]) -> str:
    columns = ["NDCG@20", "HR@20", "MRR@20", "NDCG@10", "HR@10", "MRR@10"]
    lines = [
        "| method | sessions | " + " | ".join(columns) + " |",
        "|:--|--:|" + "--:|" * len(columns),
    ]
    for method, row in sorted(results.items(), key=lambda kv: -kv[1].get("NDCG@20", 0.0)):
        cells = " | ".join(f"{row.get(c, 0.0):.3f}" for c in columns)
        lines.append(f"| {method} | {int(row['sessions']):,} | {cells} |")
    return "\n".join(lines)


def iter_days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)
