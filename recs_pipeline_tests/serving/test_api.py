"""The HTTP contract of the serving API against uvicorn on loopback and a published SQLite DB."""

from __future__ import annotations

from recs_pipeline.adapters.publishing import SqlitePublisher
from recs_pipeline_tests.serving.conftest import (
    AS_OF,
    SITE,
    T0,
    StartApi,
    click,
    publish_version,
    site_config,
)


def test_published_lists_without_live_events(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher]
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    api = start_api(url, site_config(max_k=5))

    known = api.recs("u1", k=500)  # capped at max_k
    assert [i["article_id"] for i in known["items"]][:3] == ["p1", "p2", "p3"]
    assert [i["source"] for i in known["items"]] == ["personal"] * 3 + ["popular"] * 2
    assert known["site"] == SITE and known["user_id"] == "u1"
    assert known["model_version"] == known["versions"]["user"]

    unknown = api.recs("stranger", k=4)
    assert [i["article_id"] for i in unknown["items"]] == ["pop1", "pop2", "pop3", "pop4"]
    assert {i["source"] for i in unknown["items"]} == {"popular"}

    similar = api.client.get(f"/v1/sites/{SITE}/articles/a1/similar", params={"k": 3}).json()
    assert [i["article_id"] for i in similar["items"]] == ["s1", "s2", "pop1"]
    assert [i["source"] for i in similar["items"]] == ["similar", "similar", "popular"]

    popular = api.client.get(f"/v1/sites/{SITE}/popular", params={"k": 2}).json()
    assert [i["article_id"] for i in popular["items"]] == ["pop1", "pop2"]


def test_events_drive_live_popularity_sessions_and_exclusions(
    start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher]
) -> None:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    api = start_api(url)
    items = [
        click("u9", "hot", 0),
        click("u8", "hot", 1),
        click("u7", "hot", 2),
        click("u7", "warm", 2.5),
        {
            "user_id": "u6",
            "url": "https://www.news.example.com/world/story-42/?utm_source=x",
            "ts": "2026-11-03T12:33:00Z",
        },
        {"user_id": "u6", "article_id": "x"},  # no ts
        {"user_id": "", "article_id": "x", "ts": 1},
        "garbage",
        {"user_id": "u6", "url": "https://elsewhere.com/a-1", "ts": T0},
        {"user_id": "u6", "article_id": "x", "ts": "yesterday"},
        {"user_id": "u6", "article_id": "x", "ts": 4_102_444_800_000},  # 2100
    ]
    response = api.events(items)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 5
    assert body["rejected"] == [
        {"index": 5, "reason": "missing_ts"},
        {"index": 6, "reason": "bad_user_id"},
        {"index": 7, "reason": "not_an_object"},
        {"index": 8, "reason": "url_foreign_host"},
        {"index": 9, "reason": "bad_ts"},
        {"index": 10, "reason": "ts_in_future"},
    ]
    assert body["clock"] == "2026-11-03T12:33:00Z"

    # A stranger gets live popularity first, then the published popular list.
    stranger = api.recs("stranger", k=5)
    assert [i["article_id"] for i in stranger["items"]][:3] == ["hot", "42", "warm"]
    assert [i["source"] for i in stranger["items"]] == ["live"] * 3 + ["popular"] * 2
    assert stranger["as_of"] == "2026-11-03T12:33:00Z"  # event time, not the wall clock
    scores = [i["score"] for i in stranger["items"]]
    assert scores == sorted(scores, reverse=True)

    # u9 read "hot": its session's co-visits lead ("warm" was read next to "hot" by u7), and
    # the read article never comes back.
    reader = api.recs("u9", k=5)
    ids = [i["article_id"] for i in reader["items"]]
    assert "hot" not in ids
    assert ids[0] == "warm" and reader["items"][0]["source"] == "session"

    # exclude= and the article being read are left out too; k is capped at max_k (100).
    excluded = api.recs("u9", k=100_000, exclude="warm,pop1", article_id="pop2")
    ids = [i["article_id"] for i in excluded["items"]]
    assert not {"hot", "warm", "pop1", "pop2"} & set(ids)
    # Every article the lists and live state know (33), minus the 4 read or excluded.
    assert len(ids) == len(set(ids)) == 29

    # /popular: live first, each live item with its trend (3 clicks in 2 minutes: rising).
    popular = api.client.get(f"/v1/sites/{SITE}/popular", params={"k": 4}).json()["items"]
    assert [i["source"] for i in popular] == ["live"] * 3 + ["popular"]
    assert popular[0]["article_id"] == "hot" and popular[0]["trend"] > 1.0
    assert popular[3]["trend"] is None

    # Garbage in: clear answers.
    assert api.client.get("/v1/sites/nope/popular").status_code == 404
    assert api.client.post("/v1/sites/nope/events", json=[]).status_code == 404
    assert (
        api.client.get(
            f"/v1/sites/{SITE}/recommendations", params={"user_id": "u", "k": 0}
        ).status_code
        == 422
    )
    assert api.client.get(f"/v1/sites/{SITE}/recommendations").status_code == 422
    raw = api.client.post(
        f"/v1/sites/{SITE}/events",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 400
    assert api.client.post(f"/v1/sites/{SITE}/events", json={"user_id": "u"}).status_code == 422
    big = [click("u1", "a", 0)] * 30_000
    assert api.events(big).status_code == 413

    metrics = api.client.get("/metrics").text
    assert 'recs_events_accepted_total{site="news"} 5.0' in metrics
    assert 'recs_events_rejected_total{reason="ts_in_future",site="news"} 1.0' in metrics
    assert (
        'recs_http_request_duration_seconds_count{route="/v1/sites/{site}/recommendations"}'
        in metrics
    )
    assert 'recs_model_version_age_seconds{site="news",type="user"}' in metrics

    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    state = ready.json()
    assert state["live_store"] == "ok"
    assert state["sites"][SITE]["database"] == "ok"
    assert state["sites"][SITE]["versions"]["user"]["age_at_live_clock_seconds"] == 33 * 60
    assert api.client.get("/healthz").json() == {"status": "ok"}
    spec = api.client.get("/openapi.json").json()
    assert "/v1/sites/{site}/events" in spec["paths"]
