"""The publishers (SQLite and Postgres): version lifecycle, atomic swaps, serving, articles.

Tests of behaviour run against both backends (the ``publisher`` fixture is parametrised); tests
of one backend's mechanics (query plans, migrations, locks) say so in their names.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from recs_pipeline.adapters.publishing import (
    ABANDONED_ERROR,
    SERVING_QUERY,
    PostgresPublisher,
    RecommendationBatch,
    RecommendationValidationError,
    SqlitePublisher,
    apply_migrations,
    migration_files,
    publisher_from_url,
)
from recs_pipeline.adapters.publishing import postgres as pg

SITE = "example"


def day(n: int) -> dt.datetime:
    return dt.datetime(2024, 5, n, tzinfo=dt.UTC)


def rec_rows(n_sources: int, per_source: int, tag: str, prefix: str = "u") -> pd.DataFrame:
    """``n_sources`` x ``per_source`` rows; article ids carry ``tag`` to tell versions apart."""
    sources = np.repeat([f"{prefix}{i}" for i in range(n_sources)], per_source)
    ranks = np.tile(np.arange(1, per_source + 1), n_sources)
    articles = [f"{tag}-{s}-{r}" for s, r in zip(sources, ranks, strict=True)]
    return pd.DataFrame(
        {
            "source_entity_id": sources,
            "rank": ranks,
            "recommended_article_id": articles,
            "score": 1.0 / ranks,
        }
    )


def popular_rows(articles: list[str]) -> pd.DataFrame:
    n = len(articles)
    return pd.DataFrame(
        {
            "source_entity_id": ["default"] * n,
            "rank": range(1, n + 1),
            "recommended_article_id": articles,
            "score": np.linspace(1.0, 0.1, n),
        }
    )


def user_batch(tag: str, n_users: int = 3, per_user: int = 4) -> RecommendationBatch:
    return RecommendationBatch("user", rec_rows(n_users, per_user, tag), params={"tag": tag})


AnyPublisher = SqlitePublisher | PostgresPublisher


def pg_connect(publisher: PostgresPublisher) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.libpq_url(publisher._conninfo), autocommit=True)


def sql(publisher: AnyPublisher, query: str, args: tuple[object, ...] = ()) -> list[tuple]:
    """Run one statement on the publisher's database (``?`` placeholders for both backends)."""
    if isinstance(publisher, SqlitePublisher):
        with sqlite3.connect(publisher.path) as conn:
            return conn.execute(query, args).fetchall()
    with pg_connect(publisher) as conn:
        cursor = conn.execute(query.replace("?", "%s"), args or None)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def row_count(publisher: AnyPublisher, model_id: int) -> int:
    rows = sql(publisher, "SELECT COUNT(*) FROM recommendation WHERE model_id = ?", (model_id,))
    return int(rows[0][0])


@pytest.fixture(params=["sqlite", "postgres"])
def publisher(request: pytest.FixtureRequest, tmp_path: Path) -> AnyPublisher:
    if request.param == "sqlite":
        return SqlitePublisher(tmp_path / "serving.sqlite")
    return PostgresPublisher(request.getfixturevalue("pg_url"))


@pytest.fixture
def pg_publisher(pg_url: str) -> PostgresPublisher:
    return PostgresPublisher(pg_url)


# -- lifecycle -----------------------------------------------------------------------------------


def test_first_publish_becomes_current(publisher: AnyPublisher) -> None:
    [version] = publisher.publish(SITE, day(1), [user_batch("v1")])

    assert version.status == "current"
    assert version.as_of == day(1)
    assert version.rows == 12 == row_count(publisher, version.id)
    assert version.params == {"tag": "v1"}
    assert version.finished_at is not None and version.error is None
    assert publisher.current(SITE, "user") == version
    served = publisher.recommendations(SITE, "user", "u1", size=2)
    assert served["article_id"].tolist() == ["v1-u1-1", "v1-u1-2"]
    assert served["rank"].tolist() == [1, 2]
    assert served["model_id"].tolist() == [version.id] * 2


def test_second_publish_replaces_and_stales_the_first(publisher: AnyPublisher) -> None:
    [first] = publisher.publish(SITE, day(1), [user_batch("v1")])
    [second] = publisher.publish(SITE, day(2), [user_batch("v2")])

    by_id = {v.id: v for v in publisher.versions(SITE, "user")}
    assert by_id[first.id].status == "stale"
    assert by_id[second.id].status == "current"
    assert publisher.recommendations(SITE, "user", "u0")["article_id"].iloc[0] == "v2-u0-1"


def test_same_day_rebuild_replaces_the_current(publisher: AnyPublisher) -> None:
    publisher.publish(SITE, day(1), [user_batch("v1")])
    [rebuilt] = publisher.publish(SITE, day(1), [user_batch("v1b")])
    assert rebuilt.status == "current"


def test_keep_prunes_the_oldest_stale_version_and_its_rows(publisher: AnyPublisher) -> None:
    ids = [publisher.publish(SITE, day(n), [user_batch(f"v{n}")], keep=2)[0].id for n in (1, 2, 3)]
    assert row_count(publisher, ids[0]) == 12

    [latest] = publisher.publish(SITE, day(4), [user_batch("v4")], keep=2)

    statuses = {v.id: v.status for v in publisher.versions(SITE, "user")}
    assert statuses == {latest.id: "current", ids[2]: "stale", ids[1]: "stale"}
    assert row_count(publisher, ids[0]) == 0
    assert row_count(publisher, ids[1]) == 12


def test_backfill_of_an_older_day_goes_straight_to_stale(publisher: AnyPublisher) -> None:
    [newer] = publisher.publish(SITE, day(5), [user_batch("day5")])
    [older] = publisher.publish(SITE, day(3), [user_batch("day3")])

    assert older.status == "stale" and older.finished_at is not None
    current = publisher.current(SITE, "user")
    assert current is not None and current.id == newer.id
    assert publisher.recommendations(SITE, "user", "u0")["article_id"].iloc[0] == "day5-u0-1"


def test_types_are_versioned_independently(publisher: AnyPublisher) -> None:
    pop = RecommendationBatch("popular", popular_rows(["p1", "p2"]))
    art = RecommendationBatch("article", rec_rows(2, 3, "a1", prefix="art"))
    published = publisher.publish(SITE, day(1), [user_batch("v1"), pop, art])
    assert [v.model_type for v in published] == ["user", "popular", "article"]
    assert {v.status for v in published} == {"current"}

    publisher.publish(SITE, day(2), [user_batch("v2")])
    popular = publisher.current(SITE, "popular")
    assert popular is not None and popular.id == published[1].id
    assert publisher.current("other-site", "user") is None


# -- failures ------------------------------------------------------------------------------------


def add_poison_trigger(publisher: AnyPublisher) -> None:
    """Make writing a popular version's rows fail (after the user version's rows are in)."""
    if isinstance(publisher, SqlitePublisher):
        with sqlite3.connect(publisher.path) as conn:
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON recommendation "
                "WHEN NEW.recommended_article_id = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison row refused'); END"
            )
        return
    # Postgres loads a version into a new table of its own: the trigger sits on the row count
    # update that ends a popular version's load transaction.
    with pg_connect(publisher) as conn:
        conn.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'poison row refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER poison BEFORE UPDATE OF row_count ON model FOR EACH ROW "
            "WHEN (NEW.type = 'popular' AND NEW.row_count > 0) EXECUTE FUNCTION poison()"
        )


def test_failure_mid_publish_keeps_the_served_models(publisher: AnyPublisher) -> None:
    old = publisher.publish(
        SITE,
        day(1),
        [user_batch("v1"), RecommendationBatch("popular", popular_rows(["p1", "p2"]))],
    )
    add_poison_trigger(publisher)

    # The user batch is written fine; the popular batch after it hits the poisoned row.
    bad_popular = RecommendationBatch("popular", popular_rows(["ok", "poison", "ok2"]))
    with pytest.raises((sqlite3.Error, psycopg.Error), match="poison row refused"):
        publisher.publish(SITE, day(2), [user_batch("v2"), bad_popular])

    for before in old:
        assert publisher.current(SITE, before.model_type) == before
    failed = [v for v in publisher.versions(SITE) if v.status == "failed"]
    assert {v.model_type for v in failed} == {"user", "popular"}
    for version in failed:
        assert version.error is not None and "poison row refused" in version.error
        assert version.finished_at is not None
        assert row_count(publisher, version.id) == 0  # the written user rows were dropped
    assert publisher.recommendations(SITE, "user", "u0")["article_id"].iloc[0] == "v1-u0-1"

    # The next clean publish works normally.
    [again] = publisher.publish(SITE, day(2), [user_batch("v2")])
    assert again.status == "current"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(source_entity_id=[None, *f.source_entity_id[1:]]), "null"),
        (lambda f: f.assign(recommended_article_id=[""] * len(f)), "empty"),
        (lambda f: f.assign(rank=0), "integers >= 1"),
        (lambda f: f.assign(rank=1.5), "integers >= 1"),
        (lambda f: f.assign(score=[np.inf, *f.score[1:]]), "non-finite"),
        (lambda f: f.assign(rank=1), "duplicate"),
        (lambda f: f.drop(columns="score"), "lacks columns"),
        (lambda f: f.iloc[:0], "empty"),
    ],
)
def test_invalid_rows_fail_the_version_with_a_clear_error(
    publisher: AnyPublisher, change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    [old] = publisher.publish(SITE, day(1), [user_batch("v1")])
    bad = RecommendationBatch("user", change(rec_rows(3, 4, "v2")))

    with pytest.raises(RecommendationValidationError, match=message):
        publisher.publish(SITE, day(2), [bad])

    assert publisher.current(SITE, "user") == old
    [failed] = [v for v in publisher.versions(SITE, "user") if v.status == "failed"]
    assert failed.error is not None
    assert failed.error.startswith("RecommendationValidationError") and message in failed.error


def test_popular_rows_must_use_the_default_source(publisher: AnyPublisher) -> None:
    rows = popular_rows(["p1"]).assign(source_entity_id="someone")
    with pytest.raises(RecommendationValidationError, match="'default'"):
        publisher.publish(SITE, day(1), [RecommendationBatch("popular", rows)])


def insert_pending(publisher: AnyPublisher, site: str) -> int:
    """A version as a run that died while writing leaves it."""
    if isinstance(publisher, SqlitePublisher):
        with sqlite3.connect(publisher.path) as conn:
            cursor = conn.execute(
                "INSERT INTO model (site, type, status, as_of, created_at) "
                "VALUES (?, 'user', 'pending', '2024-05-01T00:00:00.000000+00:00', "
                "'2024-05-01T01:00:00.000000+00:00')",
                (site,),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid
    rows = sql(
        publisher,
        "INSERT INTO model (site, type, status, as_of, created_at) VALUES "
        "(?, 'user', 'pending', '2024-05-01T00:00Z', '2024-05-01T01:00Z') RETURNING id",
        (site,),
    )
    return int(rows[0][0])


def test_pending_left_by_a_crashed_run_is_marked_failed(publisher: AnyPublisher) -> None:
    leftover = insert_pending(publisher, SITE)
    other_site = insert_pending(publisher, "elsewhere")

    publisher.publish(SITE, day(2), [user_batch("v2")])

    assert leftover is not None
    by_id = {v.id: v for v in publisher.versions(SITE, "user")}
    assert by_id[leftover].status == "failed"
    assert by_id[leftover].error == ABANDONED_ERROR
    assert by_id[leftover].finished_at is not None
    assert publisher.versions("elsewhere")[0].id == other_site
    assert publisher.versions("elsewhere")[0].status == "pending"


def test_failed_versions_beyond_keep_are_pruned(publisher: AnyPublisher) -> None:
    bad = RecommendationBatch("user", rec_rows(1, 2, "x").assign(rank=1))
    for n in range(1, 5):
        with pytest.raises(RecommendationValidationError):
            publisher.publish(SITE, day(n), [bad], keep=2)
    publisher.publish(SITE, day(5), [user_batch("ok")], keep=2)
    failed = [v.as_of.day for v in publisher.versions(SITE, "user") if v.status == "failed"]
    assert failed == [4, 3]


def test_publish_argument_checks(publisher: AnyPublisher) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        publisher.publish(SITE, dt.datetime(2024, 5, 1), [user_batch("v1")])
    with pytest.raises(ValueError, match="one batch per model type"):
        publisher.publish(SITE, day(1), [user_batch("a"), user_batch("b")])
    with pytest.raises(ValueError, match="model type"):
        RecommendationBatch("session", rec_rows(1, 1, "x"))  # type: ignore[arg-type]
    assert publisher.versions(SITE) == []


def test_unicode_and_long_ids_round_trip(publisher: AnyPublisher) -> None:
    sources = ["leitor-çãõ", "読者", "u" * 3000, "plain"]
    rows = pd.DataFrame(
        {
            "source_entity_id": np.repeat(sources, 3),
            "rank": np.tile([1, 2, 3], len(sources)),
            "recommended_article_id": [f"artigo-ñ-{i}-🙂" for i in range(3 * len(sources))],
            "score": np.linspace(-1e300, 1e-300, 3 * len(sources)),
        }
    )
    [version] = publisher.publish(SITE, day(1), [RecommendationBatch("user", rows)])
    assert version.rows == 12
    for source in sources:
        expected = rows.loc[rows["source_entity_id"] == source]
        served = publisher.recommendations(SITE, "user", source)
        assert served["article_id"].tolist() == expected["recommended_article_id"].tolist()
        assert served["score"].tolist() == expected["score"].tolist()


def test_params_and_metrics_are_stored_as_json(publisher: AnyPublisher) -> None:
    batch = RecommendationBatch(
        "user",
        rec_rows(1, 2, "v1"),
        params={"factors": np.int64(64), "alpha": np.float32(0.5), "dates": [dt.date(2024, 5, 1)]},
        metrics={"map_at_10": 0.25, "ndcg": float("nan")},
    )
    [version] = publisher.publish(SITE, day(1), [batch])
    assert version.params == {"factors": 64, "alpha": 0.5, "dates": ["2024-05-01"]}
    assert version.metrics == {"map_at_10": 0.25, "ndcg": None}


# -- concurrency ---------------------------------------------------------------------------------

_CURRENT_COUNT = """
SELECT m.id, COUNT(*) FROM recommendation r JOIN model m ON m.id = r.model_id
WHERE m.site = ? AND m.type = 'user' AND m.status = 'current' GROUP BY m.id
"""
_SERVE_ONE = """
SELECT r.model_id, COUNT(*) FROM recommendation r JOIN model m ON m.id = r.model_id
WHERE m.site = ? AND m.type = 'user' AND m.status = 'current' AND r.source_entity_id = ?
GROUP BY r.model_id
"""


def test_concurrent_reader_only_sees_complete_versions(publisher: AnyPublisher) -> None:
    [old] = publisher.publish(SITE, day(1), [RecommendationBatch("user", rec_rows(2000, 5, "v1"))])
    new_rows = rec_rows(20_000, 8, "v2")  # big enough for the write to take a while
    expected = {5 * 2000, 8 * 20_000}

    observations: list[tuple[float, list[tuple[int, int]], list[tuple[int, int]]]] = []
    stop = threading.Event()
    reader_errors: list[BaseException] = []

    def read() -> None:
        try:
            if isinstance(publisher, SqlitePublisher):
                conn = sqlite3.connect(publisher.path, isolation_level=None, timeout=10)
                while not stop.is_set():
                    # One read transaction: both queries see the same WAL snapshot.
                    conn.execute("BEGIN")
                    totals = conn.execute(_CURRENT_COUNT, (SITE,)).fetchall()
                    one = conn.execute(_SERVE_ONE, (SITE, "u7")).fetchall()
                    conn.execute("COMMIT")
                    observations.append((time.monotonic(), totals, one))
                conn.close()
                return
            with pg_connect(publisher) as pgconn:
                while not stop.is_set():
                    # REPEATABLE READ: both queries see one snapshot.
                    pgconn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                    totals = pgconn.execute(_CURRENT_COUNT.replace("?", "%s"), (SITE,)).fetchall()
                    one = pgconn.execute(_SERVE_ONE.replace("?", "%s"), (SITE, "u7")).fetchall()
                    pgconn.execute("COMMIT")
                    observations.append((time.monotonic(), totals, one))  # type: ignore[arg-type]
        except BaseException as exc:
            reader_errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    while not observations:
        time.sleep(0.001)
    started = time.monotonic()
    [new] = publisher.publish(SITE, day(2), [RecommendationBatch("user", new_rows)])
    finished = time.monotonic()
    while observations[-1][0] <= finished:
        time.sleep(0.001)
    stop.set()
    reader.join()

    assert not reader_errors
    during = [o for o in observations if started <= o[0] <= finished]
    assert during, "the reader never ran while the publish did"
    for _, totals, one in observations:
        assert len(totals) == 1, totals  # exactly one current version at every instant
        model_id, count = totals[0]
        assert count in expected
        assert count == (5 * 2000 if model_id == old.id else 8 * 20_000)
        assert one == [(model_id, 5 if model_id == old.id else 8)]
    seen = {totals[0][0] for _, totals, _ in observations}
    assert seen == {old.id, new.id}


def test_concurrent_publishers_are_serialised(publisher: AnyPublisher) -> None:
    publisher.publish(SITE, day(1), [user_batch("v1")])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            batch = RecommendationBatch("user", rec_rows(5000, 10, f"v{n}"))
            publisher.publish(SITE, day(n), [batch])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in (3, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    statuses = sorted((v.as_of.day, v.status) for v in publisher.versions(SITE, "user"))
    assert statuses == [(1, "stale"), (2, "stale"), (3, "current")]


# -- serving -------------------------------------------------------------------------------------


@pytest.fixture
def served(publisher: AnyPublisher) -> AnyPublisher:
    publisher.publish(
        SITE,
        day(1),
        [
            user_batch("v1"),
            RecommendationBatch("popular", popular_rows(["p1", "p2", "p3", "p4"])),
            RecommendationBatch("article", rec_rows(2, 3, "sim", prefix="art")),
        ],
    )
    return publisher


def test_unknown_user_gets_the_popular_list(served: AnyPublisher) -> None:
    popular = served.current(SITE, "popular")
    assert popular is not None
    frame = served.recommendations(SITE, "user", "nobody", size=3)
    assert frame["article_id"].tolist() == ["p1", "p2", "p3"]
    assert frame["model_id"].tolist() == [popular.id] * 3
    assert list(frame.columns) == ["rank", "article_id", "score", "model_id"]


def test_user_with_all_recommendations_excluded_gets_popular(served: AnyPublisher) -> None:
    own = served.recommendations(SITE, "user", "u0")["article_id"].tolist()
    assert served.recommendations(SITE, "user", "u0", exclude=own)["article_id"].iloc[0] == "p1"


def test_unknown_article_gets_nothing(served: AnyPublisher) -> None:
    frame = served.recommendations(SITE, "article", "no-such-article")
    assert frame.empty
    assert list(frame.columns) == ["rank", "article_id", "score", "model_id"]
    assert served.recommendations(SITE, "article", "art1")["article_id"].tolist() == [
        "sim-art1-1",
        "sim-art1-2",
        "sim-art1-3",
    ]


def test_site_without_a_user_model_serves_popular(publisher: AnyPublisher) -> None:
    publisher.publish(SITE, day(1), [RecommendationBatch("popular", popular_rows(["p1"]))])
    assert publisher.recommendations(SITE, "user", "u0")["article_id"].tolist() == ["p1"]
    assert publisher.recommendations("other", "user", "u0").empty


def test_exclude_removes_articles_and_renumbers(served: AnyPublisher) -> None:
    frame = served.recommendations(SITE, "user", "u2", size=2, exclude={"v1-u2-1", "unrelated"})
    assert frame["article_id"].tolist() == ["v1-u2-2", "v1-u2-3"]
    assert frame["rank"].tolist() == [1, 2]
    assert frame["score"].tolist() == pytest.approx([1 / 2, 1 / 3])
    popular = served.recommendations(SITE, "popular", "default", exclude=["p2"])
    assert popular["article_id"].tolist() == ["p1", "p3", "p4"]
    many = [f"x{i}" for i in range(50_000)] + ["p1"]  # beyond SQLite's parameter limit
    assert served.recommendations(SITE, "popular", "default", size=1, exclude=many)[
        "article_id"
    ].tolist() == ["p2"]


def test_sqlite_serving_queries_use_the_indexes(tmp_path: Path) -> None:
    served = SqlitePublisher(tmp_path / "serving.sqlite")
    served.publish(SITE, day(1), [user_batch("v1")])
    join_query = (
        "SELECT r.rank, r.recommended_article_id, r.score "
        "FROM recommendation r JOIN model m ON m.id = r.model_id "
        "WHERE m.site = ? AND m.type = ? AND m.status = 'current' "
        "AND r.source_entity_id = ? ORDER BY r.rank"
    )
    with sqlite3.connect(served.path) as conn:
        join_plan = conn.execute(
            "EXPLAIN QUERY PLAN " + join_query, (SITE, "user", "u0")
        ).fetchall()
        serving_plan = conn.execute(
            "EXPLAIN QUERY PLAN " + SERVING_QUERY, (SITE, "user", "u0", "[]", 10)
        ).fetchall()
    join_steps = [row[-1] for row in join_plan]
    assert "SEARCH r USING PRIMARY KEY (model_id=? AND source_entity_id=?)" in join_steps
    assert not any(step.startswith("SCAN") for step in join_steps), join_steps
    serving_steps = [row[-1] for row in serving_plan]
    assert "SEARCH r USING PRIMARY KEY (model_id=? AND source_entity_id=?)" in serving_steps
    # Only the exclusion list is scanned; no table scan, no sort.
    assert [s for s in serving_steps if s.startswith("SCAN")] == [
        "SCAN json_each VIRTUAL TABLE INDEX 1:"
    ], serving_steps
    assert not any("TEMP B-TREE" in step for step in serving_steps), serving_steps


def test_postgres_serving_query_reads_one_partition_by_index(
    pg_publisher: PostgresPublisher,
) -> None:
    for n in (1, 2, 3):
        pg_publisher.publish(SITE, day(n), [user_batch(f"v{n}", n_users=50)])
    current = pg_publisher.current(SITE, "user")
    assert current is not None
    with pg_connect(pg_publisher) as conn:
        conn.execute("SET enable_seqscan = off")  # tiny tables: ask whether an index can serve
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + pg.SERVING_QUERY,
                (SITE, "user", "u7", [], 10),
            )
        )
    # Only the current version's partition runs; the others are pruned at run time.
    assert f"recommendation_m{current.id}_serving" in plan, plan
    assert plan.count("(never executed)") == 2, plan
    assert "Sort" not in plan, plan  # the index yields rank order


# -- articles ------------------------------------------------------------------------------------


def test_upsert_articles_keeps_the_widest_window_and_newest_text(
    publisher: AnyPublisher,
) -> None:
    first = pd.DataFrame(
        {
            "article_id": ["a1", "a2"],
            "path": ["/a1-old", "/a2"],
            "title": ["Old title", None],
            "published_at": [pd.Timestamp("2024-04-30T08:00Z"), pd.NaT],
            "first_seen": pd.to_datetime(["2024-05-02T10:00Z", "2024-05-02T11:00Z"], utc=True),
            "last_seen": pd.to_datetime(["2024-05-02T12:00Z", "2024-05-02T13:00Z"], utc=True),
        }
    )
    assert publisher.upsert_articles(SITE, first) == 2
    # A newer day: later last_seen, new title; a1 also seen earlier than known (late events).
    newer = pd.DataFrame(
        {
            "article_id": ["a1"],
            "path": ["/a1-new"],
            "title": ["New title"],
            "first_seen": ["2024-05-01T09:00:00+00:00"],
            "last_seen": ["2024-05-03T09:00:00+00:00"],
        }
    )
    assert publisher.upsert_articles(SITE, newer) == 1
    # A backfill of an old day: narrower window, stale title; must not win.
    backfill = pd.DataFrame(
        {
            "article_id": ["a1", "a2"],
            "path": ["/a1-ancient", None],
            "title": ["Ancient title", "Found a title"],
            "first_seen": ["2024-05-01T10:00:00Z", "2024-05-02T11:30:00Z"],
            "last_seen": ["2024-05-01T11:00:00Z", "2024-05-02T11:45:00Z"],
        }
    )
    publisher.upsert_articles(SITE, backfill)

    rows = [
        tuple(
            value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
            if isinstance(value, dt.datetime)
            else value
            for value in row
        )
        for row in sql(
            publisher,
            "SELECT article_id, path, title, published_at, first_seen, last_seen "
            "FROM article WHERE site = ? ORDER BY article_id",
            (SITE,),
        )
    ]
    assert rows == [
        (
            "a1",
            "/a1-new",
            "New title",
            "2024-04-30T08:00:00.000000+00:00",
            "2024-05-01T09:00:00.000000+00:00",
            "2024-05-03T09:00:00.000000+00:00",
        ),
        (
            "a2",
            "/a2",
            "Found a title",  # older side, but the only non-null title
            None,
            "2024-05-02T11:00:00.000000+00:00",
            "2024-05-02T13:00:00.000000+00:00",
        ),
    ]


def test_upsert_articles_rejects_missing_ids(publisher: AnyPublisher) -> None:
    frame = pd.DataFrame(
        {"article_id": [None], "first_seen": ["2024-05-01T00:00Z"], "last_seen": ["2024-05-01Z"]}
    )
    with pytest.raises(ValueError, match="article_id"):
        publisher.upsert_articles(SITE, frame)
    assert publisher.upsert_articles(SITE, frame.iloc[:0]) == 0


# -- migrations and URLs -------------------------------------------------------------------------


def test_sqlite_migrations_applied_twice_are_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    publisher = SqlitePublisher(path)
    publisher.publish(SITE, day(1), [user_batch("v1")])
    versions = [v for v, _, _ in migration_files()]
    assert versions[0] == 1

    assert publisher.migrate() == []
    assert SqlitePublisher(path).versions(SITE)[0].status == "current"
    with sqlite3.connect(path, isolation_level=None) as conn:
        assert apply_migrations(conn) == []
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert recorded == versions
    assert journal == "wal"


def test_postgres_migrations_applied_twice_are_a_no_op(pg_url: str) -> None:
    publisher = PostgresPublisher(pg_url)
    publisher.publish(SITE, day(1), [user_batch("v1")])
    versions = [v for v, _, _ in migration_files("postgres")]
    assert versions[0] == 1
    assert publisher.migrate() == []
    assert PostgresPublisher(pg_url).versions(SITE)[0].status == "current"
    recorded = [r[0] for r in sql(publisher, "SELECT version FROM schema_migrations ORDER BY 1")]
    assert recorded == versions


def test_postgres_migrations_race_applies_each_once(pg_url: str) -> None:
    """Several processes opening a new database at once: the advisory lock lets one migrate."""
    errors: list[BaseException] = []

    def open_publisher() -> None:
        try:
            PostgresPublisher(pg_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_publisher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (1,)


def test_postgres_publish_waits_for_the_site_lock_not_for_other_sites(
    pg_publisher: PostgresPublisher,
) -> None:
    """The per-site advisory lock: a publish of the locked site waits (and times out here);
    another site publishes meanwhile."""
    key = ("recs_pipeline.publish", SITE)
    impatient = PostgresPublisher(pg.libpq_url(pg_publisher._conninfo), lock_timeout=0.5)
    with pg_connect(pg_publisher) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s || ':' || %s, 0))", key)
        with pytest.raises(TimeoutError, match="held the lock"):
            impatient.publish(SITE, day(1), [user_batch("v1")])
        [other] = impatient.publish("other-site", day(1), [user_batch("v1")])
        assert other.status == "current"
    assert impatient.versions(SITE) == []  # nothing was started while waiting
    [mine] = impatient.publish(SITE, day(1), [user_batch("v1")])
    assert mine.status == "current"


def test_postgres_many_sites_publish_at_once_without_deadlock(
    pg_publisher: PostgresPublisher,
) -> None:
    """Two publishers per site, three sites, retention on every publish: loads, attaches, swaps
    and concurrent detaches interleave; every publish finishes and each site ends consistent."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run(site: str, worker: int) -> None:
        try:
            barrier.wait()
            for n in range(1, 4):
                batches = [
                    RecommendationBatch("user", rec_rows(300, 5, f"{site}-{worker}-{n}")),
                    RecommendationBatch("popular", popular_rows([f"{site}-p{worker}-{n}"])),
                ]
                pg_publisher.publish(site, day(2 * n + worker), batches, keep=1)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(site, worker))
        for site in ("s1", "s2", "s3")
        for worker in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for site in ("s1", "s2", "s3"):
        for kind in ("user", "popular"):
            current = pg_publisher.current(site, kind)
            assert current is not None and current.as_of == day(7)  # the newest as_of won
            statuses = sorted(v.status for v in pg_publisher.versions(site, kind))
            assert statuses == ["current", "stale"]  # keep=1
    kept = {v.id for site in ("s1", "s2", "s3") for v in pg_publisher.versions(site)}
    partitions = {
        int(name.removeprefix("recommendation_m"))
        for (name,) in sql(
            pg_publisher,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'recommendation'::regclass",
        )
    }
    assert partitions == kept


def test_postgres_partitions_follow_the_versions(pg_publisher: PostgresPublisher) -> None:
    """Every kept version has its partition; pruned and failed versions leave none."""
    bad = RecommendationBatch("user", rec_rows(1, 2, "x").assign(rank=1))
    with pytest.raises(RecommendationValidationError):
        pg_publisher.publish(SITE, day(1), [bad], keep=1)
    for n in (2, 3, 4):
        pg_publisher.publish(SITE, day(n), [user_batch(f"v{n}")], keep=1)
    kept = {v.id for v in pg_publisher.versions(SITE) if v.status in ("current", "stale")}
    partitions = {
        int(name.removeprefix("recommendation_m"))
        for (name,) in sql(
            pg_publisher,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'recommendation'::regclass",
        )
    }
    assert len(kept) == 2
    assert partitions == kept
    leftovers = sql(
        pg_publisher,
        "SELECT relname FROM pg_class WHERE relname LIKE 'recommendation\\_m%' "
        "AND relkind = 'r' AND NOT relispartition",
    )
    assert leftovers == []


def test_postgres_pruning_never_waits_long_for_a_reader(pg_url: str) -> None:
    """A long query on ``recommendation`` delays dropping a pruned partition, not the publish:
    the drop gives up after ``reclaim_wait`` and a later publish finishes it."""
    publisher = PostgresPublisher(pg_url, reclaim_wait=0.3)
    [first] = publisher.publish(SITE, day(1), [user_batch("v1")], keep=0)
    with psycopg.connect(pg_url) as reader:
        reader.execute("SELECT count(*) FROM recommendation").fetchone()  # holds its lock
        started = time.monotonic()
        [second] = publisher.publish(SITE, day(2), [user_batch("v2")], keep=0)
        assert time.monotonic() - started < 10
        assert second.status == "current"
        assert {v.id for v in publisher.versions(SITE)} == {second.id}
        assert sql(publisher, f"SELECT to_regclass('recommendation_m{first.id}') IS NOT NULL")[0][0]
        reader.rollback()
    assert publisher.recommendations(SITE, "user", "u0")["article_id"].iloc[0] == "v2-u0-1"
    [third] = publisher.publish(SITE, day(3), [user_batch("v3")], keep=0)
    partitions = sql(
        publisher,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'recommendation'::regclass",
    )
    assert partitions == [(f"recommendation_m{third.id}",)]


def test_publisher_from_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = publisher_from_url("sqlite:///data/serving.sqlite")
    assert isinstance(relative, SqlitePublisher)
    assert relative.path == Path("data/serving.sqlite")
    assert (tmp_path / "data" / "serving.sqlite").exists()

    absolute = publisher_from_url(f"sqlite:///{tmp_path}/abs.sqlite")  # tmp_path starts with /
    assert isinstance(absolute, SqlitePublisher)
    assert absolute.path == tmp_path / "abs.sqlite"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/recs", "unsupported publisher URL scheme"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://host/file.sqlite", "no host"),
        ("serving.sqlite", "not a database URL"),
    ],
)
def test_publisher_from_url_rejects(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        publisher_from_url(url)
    assert "secret" not in str(info.value)


def test_publisher_from_url_for_postgres(pg_url: str) -> None:
    for scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        publisher = publisher_from_url(pg_url.replace("postgresql", scheme, 1))
        assert isinstance(publisher, PostgresPublisher)
    assert publisher.versions(SITE) == []


def test_postgres_url_password_is_never_shown() -> None:
    url = "postgresql://recs:s3cret-pw@127.0.0.1:1/recs"
    assert pg.redact_url(url) == "postgresql://recs:***@127.0.0.1:1/recs"
    with pytest.raises(psycopg.OperationalError) as info:
        publisher_from_url(url)  # nothing listens on port 1
    assert "s3cret-pw" not in str(info.value)
