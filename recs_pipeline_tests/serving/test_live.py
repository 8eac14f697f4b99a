"""Live state: the in-process store and the Redis one (127.0.0.1:6379) answer alike; the lake
warm-up; the API on Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.publishing import SqlitePublisher
from recs_pipeline.serving.live import LiveEvent, LiveSettings, MemoryLiveStore, RedisLiveStore
from recs_pipeline.serving.scoring import MINUTE_MS, decayed_count
from recs_pipeline.serving.server import lake_events, warm_from_lake
from recs_pipeline_tests.servers import delete_redis_keys, free_port
from recs_pipeline_tests.serving.conftest import (
    AS_OF,
    SITE,
    T0,
    StartApi,
    click,
    publish_version,
    site_config,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
SETTINGS = LiveSettings(
    half_lives_ms=(3 * MINUTE_MS, 120 * MINUTE_MS),
    covisit_window_ms=60 * MINUTE_MS,
    covisit_half_life_ms=360 * MINUTE_MS,
    recent_clicks=5,
)


@pytest.fixture
def redis_store() -> Iterator[RedisLiveStore]:
    prefix = f"recs_test:{uuid.uuid4().hex}:"
    store = RedisLiveStore(REDIS_URL, {SITE: SETTINGS}, prefix=prefix)
    assert store.ping(), "these tests need the Redis server on 127.0.0.1:6379"
    yield store
    delete_redis_keys(REDIS_URL, prefix)
    store.close()


def stream(n: int, seed: int = 5) -> list[LiveEvent]:
    """Clicks over 20 hours (rebases at 3 minutes), some late, some repeated."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = T0 + i * 60_000 * 20 * 60 // n
        if rng.random() < 0.1:
            ts -= rng.randrange(0, 30 * MINUTE_MS)  # late
        user = f"u{rng.randrange(40)}"
        article = f"a{min(int(rng.expovariate(0.3)), 30)}"
        events.append(LiveEvent(user, article, ts, f"s{user}" if rng.random() < 0.5 else None))
    return events


def test_redis_and_memory_stores_agree(redis_store: RedisLiveStore) -> None:
    memory = MemoryLiveStore({SITE: SETTINGS})
    events = stream(3_000)
    for start in range(0, len(events), 250):
        memory.apply(SITE, events[start : start + 250])
        redis_store.apply(SITE, events[start : start + 250])
    newest = max(e.ts_ms for e in events)
    assert memory.clock(SITE) == redis_store.clock(SITE) == newest  # late events: no going back
    assert memory.events(SITE) == redis_store.events(SITE) == 3_000

    for half_life in SETTINGS.half_lives_ms:
        mine = memory.popular(SITE, half_life, 10)
        theirs = redis_store.popular(SITE, half_life, 10)
        assert [a for a, _ in mine] == [a for a, _ in theirs]
        assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], rel=1e-6)
        top = mine[0][0]
        direct = decayed_count([e.ts_ms for e in events if e.article_id == top], newest, half_life)
        assert mine[0][1] == pytest.approx(direct, rel=1e-6)
    assert redis_store.counts(SITE, SETTINGS.half_lives_ms[0], ["a1", "zz"]) == pytest.approx(
        memory.counts(SITE, SETTINGS.half_lives_ms[0], ["a1", "zz"])
    )
    both = redis_store.counts_at(SITE, SETTINGS.half_lives_ms, ["a1", "a2", "zz"])
    assert len(both) == len(SETTINGS.half_lives_ms) and both[0]
    for half_life, theirs in zip(SETTINGS.half_lives_ms, both, strict=True):
        assert theirs == pytest.approx(redis_store.counts(SITE, half_life, ["a1", "a2", "zz"]))
        assert theirs == pytest.approx(memory.counts(SITE, half_life, ["a1", "a2", "zz"]))
    for article in ("a0", "a3"):
        mine = memory.neighbours(SITE, article, 5)
        theirs = redis_store.neighbours(SITE, article, 5)
        assert mine and [a for a, _ in mine] == [a for a, _ in theirs]
        assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], rel=1e-6)
    for user in ("u1", "u7"):
        assert memory.clicks(SITE, user) == redis_store.clicks(SITE, user)
        assert len(memory.clicks(SITE, user)) == SETTINGS.recent_clicks
        assert memory.read(SITE, user) == redis_store.read(SITE, user)
    assert memory.popular(SITE, SETTINGS.half_lives_ms[0], 3, skip={"a0"})[0][0] != "a0"
    for user in ("u3", "nobody"):
        mine_view = memory.reader_view(SITE, user, SETTINGS.half_lives_ms[0], 8)
        their_view = redis_store.reader_view(SITE, user, SETTINGS.half_lives_ms[0], 8)
        assert mine_view.clock == their_view.clock == newest
        assert mine_view.read == their_view.read and mine_view.clicks == their_view.clicks
        assert [a for a, _ in mine_view.popular] == [a for a, _ in their_view.popular]
        assert not set(a for a, _ in mine_view.popular) & mine_view.read
    for half_life in SETTINGS.successor_half_lives_ms:
        mine_next = memory.successors_of(SITE, ["a0", "a3", "unknown"], 5, half_life)
        their_next = redis_store.successors_of(SITE, ["a0", "a3", "unknown"], 5, half_life)
        assert mine_next[0] and mine_next[2] == their_next[2] == []
        for mine, theirs in zip(mine_next, their_next, strict=True):
            assert [a for a, _ in mine] == [a for a, _ in theirs]
            assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], rel=1e-6)
    many = redis_store.neighbours_of(SITE, ["a0", "a3", "unknown"], 5)
    assert many == [redis_store.neighbours(SITE, a, 5) for a in ("a0", "a3", "unknown")]
    assert memory.neighbours_of(SITE, ["a0"], 5) == [memory.neighbours(SITE, "a0", 5)]


def test_covisits_come_from_one_readers_clicks_within_the_window() -> None:
    memory = MemoryLiveStore({SITE: SETTINGS})
    memory.apply(
        SITE,
        [
            LiveEvent("r", "a", T0),
            LiveEvent("r", "a", T0 + 1),  # a repeat: no pair with itself, one click kept
            LiveEvent("r", "b", T0 + 10 * MINUTE_MS),
            LiveEvent("r", "c", T0 + 80 * MINUTE_MS),  # 70 minutes after b: outside the window
            LiveEvent("q", "b", T0 + 81 * MINUTE_MS),
        ],
    )
    assert [a for a, _ in memory.neighbours(SITE, "a", 5)] == ["b"]
    assert memory.neighbours(SITE, "b", 5) == []  # forward in time only
    assert [a for a, _ in memory.neighbours(SITE, "c", 5)] == []
    assert [c.article_id for c in memory.clicks(SITE, "r")] == ["a", "b", "c"]
    # A late click that happened before "c" points forward to "c".
    memory.apply(SITE, [LiveEvent("r", "late", T0 + 75 * MINUTE_MS)])
    assert [a for a, _ in memory.neighbours(SITE, "late", 5)] == ["c"]
    assert "late" not in [a for a, _ in memory.neighbours(SITE, "c", 5)]


def test_successors_are_each_readers_very_next_click_within_the_window(
    redis_store: RedisLiveStore,
) -> None:
    events = [
        LiveEvent("r", "a", T0),
        LiveEvent("r", "a", T0 + 1),  # a repeat: a is still the click before b
        LiveEvent("r", "b", T0 + 10 * MINUTE_MS),
        LiveEvent("r", "c", T0 + 20 * MINUTE_MS),  # a -> c co-visit, but b is c's predecessor
        LiveEvent("r", "d", T0 + 90 * MINUTE_MS),  # 70 minutes after c: no transition
        LiveEvent("q", "a", T0 + 91 * MINUTE_MS),
        LiveEvent("q", "b", T0 + 92 * MINUTE_MS),
    ]
    memory = MemoryLiveStore({SITE: SETTINGS})
    for store in (memory, redis_store):
        store.apply(SITE, events)
        for half_life in SETTINGS.successor_half_lives_ms:
            after_a, after_b, after_c = store.successors_of(SITE, ["a", "b", "c"], 10, half_life)
            assert [x for x, _ in after_a] == ["b"]
            # two transitions a -> b, decayed to the clock (T0 + 92 min) at the half-life
            expected = decayed_count(
                [T0 + 10 * MINUTE_MS, T0 + 92 * MINUTE_MS], T0 + 92 * MINUTE_MS, half_life
            )
            assert after_a[0][1] == pytest.approx(expected, rel=1e-6)
            assert [x for x, _ in after_b] == ["c"] and after_c == []
        assert store.successors_of(SITE, ["a"], 10, 12_345) == [[]]  # no such half-life
        assert "c" in dict(store.neighbours(SITE, "a", 10))  # co-visits reach further


def test_backward_co_visits_weigh_as_configured(redis_store: RedisLiveStore) -> None:
    both = dataclasses.replace(SETTINGS, covisit_backward_weight=0.5)
    memory = MemoryLiveStore({"both": both})
    shared = RedisLiveStore(REDIS_URL, {"both": both}, prefix=redis_store.prefix)
    events = [LiveEvent("r", "a", T0), LiveEvent("r", "b", T0 + MINUTE_MS)]
    memory.apply("both", events)
    shared.apply("both", events)
    for store in (memory, shared):
        forward = dict(store.neighbours("both", "a", 5))
        backward = dict(store.neighbours("both", "b", 5))
        assert backward["a"] == pytest.approx(0.5 * forward["b"])
    shared.close()


def test_lake_warm_up_replays_the_newest_hours(tmp_path: Path) -> None:
    lake = lake_from_url(str(tmp_path / "lake"))
    start = pd.Timestamp("2026-11-03T00:00:00Z")
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(6)],
            "ts": [start + pd.Timedelta(hours=h) for h in (1, 10, 20, 21, 22, 22.5)],
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u3"],
            "article_id": ["old", "old", "a", "b", "a", "x"],
            "event_name": ["page_view"] * 5 + ["page_ping"],
            "path": ["/p"] * 6,
            "referrer": [None] * 6,
            "engaged_ms": [0] * 6,
        }
    )
    lake.write_partition(SITE, "raw_events", "2026-11-03", frame)
    events = lake_events(lake, SITE, hours=3)
    assert [(e.user_id, e.article_id) for e in events] == [("u2", "a"), ("u2", "b"), ("u3", "a")]
    store = MemoryLiveStore({SITE: SETTINGS})
    config = site_config(warm_hours=3)
    assert warm_from_lake(store, lake, [config]) == {SITE: 3}
    assert store.clock(SITE) == int(dt.datetime(2026, 11, 3, 22, tzinfo=dt.UTC).timestamp() * 1000)
    assert [a for a, _ in store.neighbours(SITE, "a", 5)] == ["b"]
    assert warm_from_lake(store, lake, [config]) == {}  # a store with a clock is left alone


def test_api_on_redis_shares_state_between_two_workers(
    start_api: StartApi,
    sqlite_db: tuple[str, SqlitePublisher],
    redis_store: RedisLiveStore,
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    config = site_config()
    other = RedisLiveStore(REDIS_URL, {SITE: SETTINGS}, prefix=redis_store.prefix)
    first = start_api(url, config, live=redis_store)
    second = start_api(url, config, live=other)
    response = first.events(
        [
            click("a", "x", 0),
            click("b", "x", 1),
            click("b", "y", 2),
            click("c", "z", 2),
            click("d", "z", 2),
        ]
    )
    assert response.json()["accepted"] == 5
    # The other worker sees the same live state: live popularity, co-visits, reads.
    items = second.recs("a", k=3)["items"]
    assert [(i["article_id"], i["source"]) for i in items] == [
        ("y", "session"),
        ("z", "live"),
        ("pop1", "popular"),
    ]
    assert "x" not in [i["article_id"] for i in items]
    assert second.client.get("/readyz").json()["live_store"] == "ok"
    other.close()


def test_redis_down_keeps_the_published_lists(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher], tmp_path: Path
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    # Nothing listens on this port: like a Redis that is restarting.
    down = RedisLiveStore(
        f"redis://127.0.0.1:{free_port()}/0", {SITE: SETTINGS}, prefix="x:", socket_timeout=0.2
    )
    lake = lake_from_url(str(tmp_path / "lake"))  # the warm-up fails too, and start-up goes on
    api = start_api(url, site_config(warm_hours=1), live=down, lake=lake)
    items = api.recs("u1", k=4)["items"]
    assert [(i["article_id"], i["source"]) for i in items] == [
        ("p1", "personal"),
        ("p2", "personal"),
        ("p3", "personal"),
        ("pop1", "popular"),
    ]
    assert api.client.get(f"/v1/sites/{SITE}/popular", params={"k": 2}).status_code == 200
    posted = api.events([click("u1", "x", 0)])
    assert posted.status_code == 503 and "live store unavailable" in posted.json()["detail"]
    ready = api.client.get("/readyz").json()
    assert ready["live_store"] == "unreachable" and ready["ready"] is True
    assert "recs_live_store_up 0.0" in api.client.get("/metrics").text


def test_redis_restarted_mid_traffic(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher], tmp_path: Path
) -> None:
    """A Redis of this test's own (memory only) is stopped and started again under the API."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("this test needs the redis-server binary (apt-get install redis-server)")
    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=port, socket_timeout=0.2)
        for _ in range(100):
            try:
                if probe.ping():
                    break
            except redis.RedisError:
                time.sleep(0.05)
        probe.close()
        return process

    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    server = start_redis()
    try:
        store = RedisLiveStore(
            f"redis://127.0.0.1:{port}/0", {SITE: SETTINGS}, prefix="t:", socket_timeout=0.5
        )
        api = start_api(url, site_config(), live=store)
        assert api.events([click("a", "fresh", 0)]).json()["accepted"] == 1
        assert api.recs("u1", k=1)["items"][0] == {
            "article_id": "fresh",
            "score": 1.0,
            "source": "live",
            "trend": None,
        }
        server.terminate()
        server.wait(timeout=10)
        # Redis away: the published lists answer, writes say so.
        items = api.recs("u1", k=2)["items"]
        assert [(i["article_id"], i["source"]) for i in items] == [
            ("p1", "personal"),
            ("p2", "personal"),
        ]
        assert api.events([click("a", "x", 1)]).status_code == 503
        assert api.client.get("/readyz").json()["live_store"] == "unreachable"
        # Back (empty: it keeps nothing on disk): events are accepted again and count at once.
        server = start_redis()
        assert api.events([click("b", "later", 2)]).json()["accepted"] == 1
        assert api.recs("u1", k=1)["items"][0]["article_id"] == "later"
        assert api.client.get("/readyz").json()["live_store"] == "ok"
        store.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
