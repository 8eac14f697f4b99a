"""The session ranker: trained by replaying clicks through the live store, served by the API
with the very same features, published inside a version's params."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.adapters.publishing import RecommendationBatch, SqlitePublisher
from recs_pipeline.core.site import ServingConfig
from recs_pipeline.serving.app import SIGNAL_DEPTH, live_settings, ranked_by
from recs_pipeline.serving.live import LiveEvent, MemoryLiveStore
from recs_pipeline.serving.scoring import MINUTE_MS
from recs_pipeline.serving.session_ranker import (
    LIVE_FEATURES,
    SESSION_RANKER_PARAM,
    SessionRanker,
    read_signals,
    request_features,
    session_ranker_as_of,
    session_ranker_document,
    session_ranker_from_document,
)
from recs_pipeline_tests.serving.conftest import SITE, StartApi, site_config

UTC = ZoneInfo("UTC")
DAY = dt.date(2026, 11, 4)
ARTICLES = 60


def _next_of(article: int) -> int:
    """What a reader of ``article`` usually opens next (a fixed pairing of the catalogue)."""
    return (article * 7 + 3) % ARTICLES


def stream(days: int = 4, sessions_per_day: int = 300, seed: int = 3) -> pd.DataFrame:
    """Page views where the next article follows the last one 70% of the time and popularity
    (a steep Zipf over the catalogue) the rest: the blend mixes both evenly, a ranker can learn
    how much each is worth."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, ARTICLES + 1) ** 1.3
    weights /= weights.sum()
    rows = []
    start = dt.datetime.combine(DAY - dt.timedelta(days=days - 1), dt.time(), UTC)
    for d in range(days):
        for _ in range(sessions_per_day):
            user = f"u{rng.integers(0, 3 * sessions_per_day)}"
            moment = start + dt.timedelta(days=d, seconds=float(rng.uniform(0, 86_000)))
            article = int(rng.choice(ARTICLES, p=weights))
            for _click in range(int(rng.integers(2, 5))):
                rows.append((user, f"a{article}", moment))
                moment += dt.timedelta(seconds=float(rng.uniform(20, 240)))
                article = (
                    _next_of(article)
                    if rng.random() < 0.7
                    else int(rng.choice(ARTICLES, p=weights))
                )
    frame = pd.DataFrame(rows, columns=["user_id", "article_id", "ts"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.sort_values("ts", ignore_index=True)


def config(**fields: object) -> ServingConfig:
    return ServingConfig.model_validate(
        {
            "session_ranker_days": 3,
            "session_ranker_requests": 1200,
            "session_ranker_validation_requests": 300,
            "session_ranker_trees": 40,
            **fields,
        }
    )


@pytest.fixture(scope="module")
def trained() -> tuple[pd.DataFrame, SessionRanker]:
    views = stream()
    as_of = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), UTC)
    model = session_ranker_as_of(views, DAY, as_of, config(), UTC)
    assert model is not None
    return views, model


def test_the_ranker_learns_what_the_blend_cannot_weigh(
    trained: tuple[pd.DataFrame, SessionRanker],
) -> None:
    _, model = trained
    info = model.info
    ranker = info["validation"]["session_ranker"]["NDCG@20"]
    blend = info["validation"]["blend"]["NDCG@20"]
    assert info["validation_requests"] >= 250
    assert info["requests_with_truth"] > 600
    # Trained on the three days before, measured on the held-out day's sessions.
    assert ranker > blend + 0.02, (ranker, blend)
    assert info["beats_blend"] is True
    assert set(model.features) <= set(LIVE_FEATURES)


def test_training_is_deterministic() -> None:
    views = stream(sessions_per_day=100, seed=5)
    as_of = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), UTC)
    small = config(session_ranker_requests=300, session_ranker_trees=10)
    first = session_ranker_as_of(views, DAY, as_of, small, UTC)
    again = session_ranker_as_of(views, DAY, as_of, small, UTC)
    assert first is not None and again is not None
    assert again.booster.model_to_string() == first.booster.model_to_string()
    assert again.info["validation"] == first.info["validation"]


def test_too_little_traffic_trains_nothing() -> None:
    views = stream(days=1, sessions_per_day=5)
    as_of = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), UTC)
    assert session_ranker_as_of(views, DAY, as_of, config(), UTC) is None
    assert session_ranker_as_of(views, DAY, as_of, config(session_ranker_days=0), UTC) is None


def test_features_never_offer_a_read_article() -> None:
    store = MemoryLiveStore({SITE: live_settings(site_config().serving)})
    t0 = 1_790_000_000_000
    store.apply(
        SITE,
        [
            LiveEvent("u1", "a1", t0, "s1"),
            LiveEvent("u2", "a1", t0 + 1000, "s2"),
            LiveEvent("u2", "a2", t0 + 2000, "s2"),
            LiveEvent("u3", "a3", t0 + 3000, "s3"),
        ],
    )
    signals = read_signals(store, SITE, "u1", live_settings(site_config().serving))
    assert signals is not None
    names, rows = request_features(signals, UTC, excluded=["a3"])
    assert "a1" not in names and "a3" not in names
    assert names == ["a2"]  # a co-visit of a1 (u2 read a2 after it)
    assert rows.shape == (1, len(LIVE_FEATURES))
    cov_last = rows[0, LIVE_FEATURES.index("cov_last_share")]
    assert cov_last == pytest.approx(1.0)


def test_a_document_naming_unknown_features_is_refused(
    trained: tuple[pd.DataFrame, SessionRanker],
) -> None:
    _, model = trained
    document = session_ranker_document(model)
    assert session_ranker_from_document(document).booster.model_to_string() == (
        model.booster.model_to_string()
    )
    broken = dict(document, model=document["model"].replace("cov_last_share", "cov_tomorrow"))
    with pytest.raises(ValueError, match="cov_tomorrow"):
        session_ranker_from_document(broken)


def _publish(publisher: SqlitePublisher, as_of: dt.datetime, params: dict[str, object]) -> None:
    popular = pd.DataFrame(
        {
            "source_entity_id": "default",
            "rank": range(1, 11),
            "recommended_article_id": [f"a{i}" for i in range(10)],
            "score": [1.0 / r for r in range(1, 11)],
        }
    )
    publisher.publish(SITE, as_of, [RecommendationBatch("popular", popular, params=params)])


def test_the_api_scores_requests_with_the_published_ranker_and_training_features(
    trained: tuple[pd.DataFrame, SessionRanker],
    start_api: StartApi,
    sqlite_db: tuple[str, SqlitePublisher],
) -> None:
    views, model = trained
    url, publisher = sqlite_db
    as_of = dt.datetime.combine(DAY, dt.time(), UTC)
    _publish(publisher, as_of, {})
    cfg = site_config()
    api = start_api(url, cfg)
    day = views[views["ts"] >= pd.Timestamp(as_of)]
    events = [
        {"user_id": u, "article_id": a, "ts": int(t.value // 1_000_000)}
        for u, a, t in day[["user_id", "article_id", "ts"]].itertuples(index=False)
    ][:1500]
    for begin in range(0, len(events), 500):
        assert api.events(events[begin : begin + 500]).status_code == 200
    reader = events[-1]["user_id"]
    before = api.recs(reader, k=10)
    assert before["ranked_by"] == "blend"

    _publish(
        publisher,
        as_of + dt.timedelta(hours=1),
        {SESSION_RANKER_PARAM: session_ranker_document(model)},
    )
    api.state.sites[SITE].holder.refresh()
    answer = api.recs(reader, k=10)
    assert answer["ranked_by"] == "session_ranker"
    ready = api.client.get("/readyz").json()["sites"][SITE]["session_ranker"]
    assert ready["used"] is True and ready["day"] == DAY.isoformat()
    assert ready["validation_ndcg20"] > ready["blend_ndcg20"]

    # A shadow store fed the same events, read and ranked by the training code path.
    shadow = MemoryLiveStore({SITE: live_settings(cfg.serving)})
    shadow.apply(SITE, [LiveEvent(e["user_id"], e["article_id"], e["ts"]) for e in events])
    signals = read_signals(
        shadow,
        SITE,
        reader,
        live_settings(cfg.serving),
        n=min(cfg.serving.candidates, 50),
        depth=SIGNAL_DEPTH,
        session_gap_ms=int(cfg.serving.session_gap_minutes * MINUTE_MS),
    )
    assert signals is not None
    expected = ranked_by(model, signals, cfg.tz, 10, signals.read)
    served = [item["article_id"] for item in answer["items"]]
    assert served[: len(expected)] == [s.article_id for s in expected]
    assert served != [item["article_id"] for item in before["items"]]
    assert not set(served) & signals.read
    assert {item["source"] for item in answer["items"]} <= {
        "live",
        "session",
        "personal",
        "similar",
        "popular",
    }

    # Switched off in the site's config: the blend answers again.
    api_off = start_api(url, site_config(session_ranker=False))
    api_off.events(events)
    assert api_off.recs(reader, k=10)["ranked_by"] == "blend"


def test_recs_serve_serves_the_good_sites_beside_a_broken_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from recs_pipeline.serving.server import app_from_environment

    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "good.yaml").write_text(
        "name: good\nstart_date: 2026-11-01\n"
        "events: {format: snowplow, location: /nonexistent, hosts: [good.example.com]}\n"
    )
    (sites / "broken.yaml").write_text("name: broken\nstart_date: [not a date\n")
    SqlitePublisher(tmp_path / "recs.sqlite")
    monkeypatch.setenv("RECS_SITES_DIR", str(sites))
    monkeypatch.setenv("RECS_DATABASE_URL", f"sqlite:///{tmp_path / 'recs.sqlite'}")
    monkeypatch.delenv("RECS_LIVE_URL", raising=False)
    app = app_from_environment(warm=False)
    with TestClient(app) as client:
        assert client.get("/v1/sites/good/popular").status_code == 200
        assert client.get("/v1/sites/broken/popular").status_code == 404
    with pytest.raises(ValueError, match=r"broken\.yaml"):
        app_from_environment(["broken"], warm=False)
