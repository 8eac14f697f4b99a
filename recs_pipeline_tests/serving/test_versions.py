"""Published versions as the API sees them: a new publish without restart, never a mix of two,
the last good lists while the database is away, Postgres, the write key."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import psycopg

from recs_pipeline.adapters.publishing import PostgresPublisher, SqlitePublisher
from recs_pipeline_tests.serving.conftest import (
    AS_OF,
    SITE,
    StartApi,
    click,
    publish_version,
    site_config,
)


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_new_publish_is_picked_up_and_no_answer_mixes_two_versions(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher]
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF, tag="-v0")
    api = start_api(url, refresh_seconds=0.05)
    first = api.recs("u1", k=6)
    assert {i["article_id"].rsplit("-", 1)[1] for i in first["items"]} == {"v0"}

    answers: list[dict[str, object]] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=api.url, timeout=10) as client:
            while not stop.is_set():
                for path, params in (
                    (f"/v1/sites/{SITE}/recommendations", {"user_id": "u1", "k": 6}),
                    (f"/v1/sites/{SITE}/articles/a1/similar", {"k": 4}),
                ):
                    answers.append(client.get(path, params=params).json())

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for n in range(1, 6):
            publish_version(publisher, AS_OF + dt.timedelta(hours=n), tag=f"-v{n}")
            time.sleep(0.15)
    finally:
        stop.set()
        asker.join()
    # Each answer comes from one publish: every id carries the same version tag.
    tags_seen = set()
    for answer in answers:
        tags = {str(i["article_id"]).rsplit("-", 1)[1] for i in answer["items"]}  # type: ignore[index, union-attr]
        assert len(tags) == 1, answer
        tags_seen |= tags
    assert len(answers) > 20 and len(tags_seen) >= 3  # versions changed while it was asked
    wait_for(lambda: api.recs("u1", k=1)["items"][0]["article_id"] == "p1-v5")
    latest = api.recs("u1", k=1)
    assert latest["model_version"] == max(v.id for v in publisher.versions(SITE, "user"))


def test_database_gone_keeps_the_last_good_lists_and_comes_back(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher], tmp_path: Path
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF, tag="-v0")
    api = start_api(url, refresh_seconds=0.05)
    before = api.recs("u1", k=5)
    database = publisher.path
    away = tmp_path / "away"
    away.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{database}{suffix}")
        if source.exists():
            shutil.move(source, away / source.name)
    wait_for(lambda: api.client.get("/readyz").json()["sites"][SITE]["database"] == "unreachable")
    ready = api.client.get("/readyz").json()
    assert ready["ready"] is True  # still serving its last good lists
    assert "unable to open" in ready["sites"][SITE]["database_error"]
    assert api.recs("u1", k=5)["items"] == before["items"]
    assert (
        api.client.post(f"/v1/sites/{SITE}/events", json=[click("u1", "p1-v0", 0)]).json()[
            "accepted"
        ]
        == 1
    )
    assert "p1-v0" not in [i["article_id"] for i in api.recs("u1", k=5)["items"]]
    assert 'recs_serving_database_up{site="news"} 0.0' in api.client.get("/metrics").text
    for name in os.listdir(away):
        shutil.move(away / name, database.parent / name)
    publish_version(publisher, AS_OF + dt.timedelta(hours=1), tag="-v1")
    wait_for(lambda: "p2-v1" in [i["article_id"] for i in api.recs("u2", k=5)["items"]])
    assert api.client.get("/readyz").json()["sites"][SITE]["database"] == "ok"


def test_postgres_serving_database(start_api: StartApi, pg_url: str) -> None:
    publisher = PostgresPublisher(pg_url)
    publish_version(publisher, AS_OF, tag="-pg")
    api = start_api(pg_url, refresh_seconds=0.05)
    items = api.recs("u1", k=4)["items"]
    assert [(i["article_id"], i["source"]) for i in items] == [
        ("p1-pg", "personal"),
        ("p2-pg", "personal"),
        ("p3-pg", "personal"),
        ("pop1-pg", "popular"),
    ]
    publish_version(publisher, AS_OF + dt.timedelta(hours=1), tag="-pg2")
    wait_for(lambda: api.recs("u1", k=1)["items"][0]["article_id"] == "p1-pg2")
    ready = api.client.get("/readyz").json()["sites"][SITE]
    assert ready["database"] == "ok" and ready["versions"]["user"]["rows"] == 5


def test_write_key_from_the_environment(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher]
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    os.environ["RECS_TEST_WRITE_KEY"] = "s3cret"
    try:
        api = start_api(url, site_config(write_key_env="RECS_TEST_WRITE_KEY"))
    finally:
        del os.environ["RECS_TEST_WRITE_KEY"]
    events = [click("u1", "x", 0)]
    assert api.events(events).status_code == 401
    wrong = api.events(events, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    right = api.events(events, headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200 and right.json()["accepted"] == 1
    # Named but not set on the server: writes are refused, reads still work.
    closed = start_api(url, site_config(write_key_env="RECS_TEST_UNSET_KEY"))
    assert closed.events(events, headers={"Authorization": "Bearer x"}).status_code == 401
    assert closed.recs("u1", k=1)["items"][0]["article_id"] == "p1"


def test_postgres_going_away_and_coming_back(
    start_api: StartApi, pg_server: str, pg_url: str
) -> None:
    publish_version(PostgresPublisher(pg_url), AS_OF, tag="-a")
    api = start_api(pg_url, refresh_seconds=0.05)
    before = api.recs("u1", k=4)["items"]
    assert before[0]["article_id"] == "p1-a"
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    wait_for(lambda: api.client.get("/readyz").json()["sites"][SITE]["database"] == "unreachable")
    assert api.recs("u1", k=4)["items"] == before  # the last good lists
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    # Back, but empty (migrated, nothing published): still the last good lists.
    publisher = PostgresPublisher(pg_url)
    wait_for(
        lambda: (
            "no current" in str(api.client.get("/readyz").json()["sites"][SITE]["database_error"])
        )
    )
    assert api.recs("u1", k=4)["items"] == before
    publish_version(publisher, AS_OF, tag="-b")
    wait_for(lambda: api.recs("u1", k=1)["items"][0]["article_id"] == "p1-b")
    assert api.client.get("/readyz").json()["sites"][SITE]["database"] == "ok"
