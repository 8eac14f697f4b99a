"""A publishing process killed (SIGKILL, a real subprocess) in the middle of COPY and in the
middle of the swap: the previous versions stay served, the database stays consistent, and the
next publish succeeds."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest

from recs_pipeline.adapters.publishing import (
    ABANDONED_ERROR,
    PostgresPublisher,
    RecommendationBatch,
)
from recs_pipeline_tests.adapters.test_publisher import popular_rows, rec_rows

SITE = "faulty"

#: A publisher in a process of its own: argv = database URL, number of users, tag.
PUBLISH_SCRIPT = """
import datetime as dt, sys
from recs_pipeline.adapters.publishing import PostgresPublisher, RecommendationBatch
from recs_pipeline_tests.adapters.test_publisher import popular_rows, rec_rows
url, users, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PostgresPublisher(url).publish(
    "faulty",
    dt.datetime(2024, 5, 9, tzinfo=dt.UTC),
    [
        RecommendationBatch("popular", popular_rows([f"{tag}-p{i}" for i in range(20)])),
        RecommendationBatch("user", rec_rows(users, 10, tag)),
    ],
)
"""


def start_publisher(url: str, users: int, tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISH_SCRIPT, url, str(users), tag],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def one(conn: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def publishers_gone(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """The killed client's server process has noticed and rolled back."""
    return (
        one(
            conn,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'recs_pipeline' AND datname = current_database()",
        )
        == 0
    )


def assert_consistent(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """One current per type; every current or stale version has its whole partition; no table
    outside the partition tree."""
    rows = conn.execute(
        "SELECT type, count(*) FROM model WHERE status = 'current' GROUP BY type ORDER BY type"
    ).fetchall()
    assert rows == [("popular", 1), ("user", 1)]
    kept = conn.execute(
        "SELECT id, row_count FROM model WHERE status IN ('current', 'stale')"
    ).fetchall()
    for model_id, expected in kept:
        table = f"recommendation_m{model_id}"
        assert one(conn, f"SELECT to_regclass('{table}') IS NOT NULL"), table
        assert one(conn, f"SELECT count(*) FROM {table}") == expected
    loose = conn.execute(
        "SELECT relname FROM pg_class WHERE relname ~ '^recommendation_m[0-9]+$' "
        "AND relkind = 'r' AND NOT relispartition"
    ).fetchall()
    assert loose == []


@pytest.fixture
def served(pg_url: str) -> tuple[PostgresPublisher, dict[str, int]]:
    """A database with a current user and popular version (as of day 8)."""
    publisher = PostgresPublisher(pg_url)
    versions = publisher.publish(
        SITE,
        dt.datetime(2024, 5, 8, tzinfo=dt.UTC),
        [
            RecommendationBatch("popular", popular_rows(["old-p1", "old-p2"])),
            RecommendationBatch("user", rec_rows(50, 5, "old")),
        ],
    )
    return publisher, {v.model_type: v.id for v in versions}


def check_old_versions_served(publisher: PostgresPublisher, old: dict[str, int]) -> None:
    for kind, model_id in old.items():
        current = publisher.current(SITE, kind)
        assert current is not None and current.id == model_id, kind
    served = publisher.recommendations(SITE, "user", "u3", size=3)
    assert served["article_id"].tolist() == ["old-u3-1", "old-u3-2", "old-u3-3"]
    assert publisher.recommendations(SITE, "user", "nobody")["article_id"].tolist() == [
        "old-p1",
        "old-p2",
    ]


def check_next_publish_recovers(
    publisher: PostgresPublisher, pg_url: str, old: dict[str, int]
) -> None:
    [new] = publisher.publish(
        SITE,
        dt.datetime(2024, 5, 10, tzinfo=dt.UTC),
        [RecommendationBatch("user", rec_rows(50, 5, "next"))],
    )
    assert new.status == "current"
    assert publisher.recommendations(SITE, "user", "u3", size=1)["article_id"].tolist() == [
        "next-u3-1"
    ]
    # The killed run's user version was marked failed; its partition is gone.
    failed = [v for v in publisher.versions(SITE, "user") if v.status == "failed"]
    assert [v.error for v in failed] == [ABANDONED_ERROR]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert one(conn, f"SELECT to_regclass('recommendation_m{failed[0].id}') IS NULL")
        assert (
            one(conn, "SELECT count(*) FROM model WHERE status = 'pending' AND type = 'user'") == 0
        )
        # The popular version of the killed run is pending until the next popular publish.
        publisher.publish(
            SITE,
            dt.datetime(2024, 5, 10, tzinfo=dt.UTC),
            [RecommendationBatch("popular", popular_rows(["new-p1"]))],
        )
        assert one(conn, "SELECT count(*) FROM model WHERE status = 'pending'") == 0
        assert_consistent(conn)
    stale = {v.id for v in publisher.versions(SITE) if v.status == "stale"}
    assert set(old.values()) <= stale


def test_killed_in_the_middle_of_copy(
    served: tuple[PostgresPublisher, dict[str, int]], pg_url: str
) -> None:
    publisher, old = served
    with psycopg.connect(pg_url, autocommit=True) as watcher:
        process = start_publisher(pg_url, users=80_000, tag="killed")
        try:

            def copying() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"publisher exited early: {process.stderr.read()!r}")  # type: ignore[union-attr]
                rows = watcher.execute(
                    "SELECT tuples_processed FROM pg_stat_progress_copy "
                    "WHERE datname = current_database()"
                ).fetchall()
                return any(n > 10_000 for (n,) in rows)

            wait_for(copying, "the user version's COPY to be under way")
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        wait_for(lambda: publishers_gone(watcher), "the server to roll the COPY back")

        check_old_versions_served(publisher, old)
        pending = watcher.execute(
            "SELECT type FROM model WHERE status = 'pending' ORDER BY type"
        ).fetchall()
        assert pending == [("popular",), ("user",)]  # recorded before loading; never swapped
        assert_consistent(watcher)
    check_next_publish_recovers(publisher, pg_url, old)


def test_killed_in_the_middle_of_the_swap(
    served: tuple[PostgresPublisher, dict[str, int]], pg_url: str
) -> None:
    publisher, old = served
    with (
        psycopg.connect(pg_url, autocommit=True) as watcher,
        psycopg.connect(pg_url) as blocker,
    ):
        # Hold the old user version's row: the swap promotes popular first, then waits here,
        # with half of its changes made inside its open transaction.
        blocker.execute("SELECT id FROM model WHERE id = %s FOR UPDATE", (old["user"],))
        process = start_publisher(pg_url, users=2_000, tag="killed")
        try:

            def swapping() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"publisher exited early: {process.stderr.read()!r}")  # type: ignore[union-attr]
                return (
                    one(
                        watcher,
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND application_name = 'recs_pipeline' AND query LIKE '%FOR UPDATE%'",
                    )
                    == 1
                )

            wait_for(swapping, "the swap to be half done")
            # Mid-swap, readers still see the old versions only.
            check_old_versions_served(publisher, old)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        blocker.rollback()  # the server process goes on, finds its client gone, rolls back
        wait_for(lambda: publishers_gone(watcher), "the server to roll the swap back")

        check_old_versions_served(publisher, old)
        pending = watcher.execute(
            "SELECT type, row_count FROM model WHERE status = 'pending' ORDER BY type"
        ).fetchall()
        assert pending == [("popular", 20), ("user", 20_000)]  # loaded, never promoted
        assert_consistent(watcher)
    check_next_publish_recovers(publisher, pg_url, old)
