"""The LightGBM ranker on small generated clicks: training, validation, storage, serving."""

from __future__ import annotations

import dataclasses
import itertools
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core.candidates import CandidateParams, ClickHistory
from recs_pipeline.core.ranker import (
    RankerParams,
    RankingContext,
    anchors_before,
    load_ranker,
    rank_lists,
    recommend,
    save_ranker,
    train_ranker,
)

TZ = ZoneInfo("America/Sao_Paulo")
START = pd.Timestamp("2026-11-01T03:00:00Z")
AS_OF = START + pd.Timedelta(hours=40)


def news_clicks(seed: int = 3, readers: int = 400, hours: int = 44) -> pd.DataFrame:
    """Readers of two sections; articles published hourly, attention halves every 2 hours."""
    rng = np.random.default_rng(seed)
    section_of_reader = rng.integers(0, 2, readers)
    rows = []
    for hour in range(hours):
        published = [
            (f"h{h}s{s}", h, s) for h in range(max(0, hour - 12), hour + 1) for s in (0, 1)
        ]
        ages = np.array([hour - h for _, h, _ in published], dtype=float)
        sections = np.array([s for _, _, s in published])
        active = rng.choice(readers, size=60, replace=False)
        for reader in active:
            weight = np.exp2(-ages / 2.0) * np.where(sections == section_of_reader[reader], 4, 1)
            picks = rng.choice(len(published), size=2, replace=False, p=weight / weight.sum())
            for minute, pick in zip(rng.uniform(0, 60, 2), picks, strict=True):
                rows.append(
                    (
                        f"u{reader}",
                        published[pick][0],
                        START + pd.Timedelta(hours=hour, minutes=minute),
                    )
                )
    return pd.DataFrame(rows, columns=["user_id", "article_id", "ts"])


SMALL = RankerParams(
    training_slots=6,
    validation_slots=2,
    max_users_per_slot=200,
    n_estimators=40,
    min_child_samples=10,
    candidates=CandidateParams(lookback_hours=24, pop_hour_n=15, pop_day_n=5, fresh_n=5),
)


@pytest.fixture(scope="module")
def context() -> RankingContext:
    return RankingContext(ClickHistory.from_events(news_clicks()), TZ)


@pytest.fixture(scope="module")
def model(context: RankingContext):  # type: ignore[no-untyped-def]
    return train_ranker(context, AS_OF, SMALL)


def test_anchors_are_a_time_split() -> None:
    training, validation = anchors_before(AS_OF, SMALL)
    assert len(training) == 6 and len(validation) == 2
    assert validation[-1] + pd.Timedelta(hours=2) == AS_OF  # last labels end at as-of
    assert max(training) < min(validation)


def test_overlapping_anchors_keep_training_labels_before_validation() -> None:
    params = dataclasses.replace(SMALL, anchor_step_hours=0.5, training_slots=9)
    training, validation = anchors_before(AS_OF, params)
    assert len(training) == 9
    assert {b - a for a, b in itertools.pairwise(training)} == {pd.Timedelta(minutes=30)}
    # The newest training label window ends exactly where the held-out windows begin.
    assert training[-1] + pd.Timedelta(hours=2) == validation[0]


def test_training_records_size_importance_and_validation(model) -> None:  # type: ignore[no-untyped-def]
    info = model.info
    assert info["training_rows"] > 1000 and info["training_groups"] > 50
    assert 0 < info["training_positives"] < info["training_rows"]
    assert set(info["feature_importance"]) >= {"pop_hour_score", "article_age_hours"}
    validation = info["validation"]
    assert {"ranker", "pop24h", "pop_decay", "covisit", "als"} <= set(validation)
    assert validation["ranker"]["users"] > 20
    # The section preference is learnable: the ranker beats every baseline on held-out slots.
    best = max(validation[name]["ndcg"] for name in ("pop24h", "pop_decay", "covisit", "als"))
    assert validation["ranker"]["ndcg"] > best


def test_saved_model_scores_the_same(model, context: RankingContext) -> None:  # type: ignore[no-untyped-def]
    text, info = save_ranker(model)
    loaded = load_ranker(text, info)
    assert loaded.params == model.params
    users = context.history.user_codes([f"u{i}" for i in range(50)])
    before = rank_lists(model, context, AS_OF, users, 10)
    after = rank_lists(loaded, context, AS_OF, users, 10)
    np.testing.assert_array_equal(before.article_code, after.article_code)
    np.testing.assert_allclose(before.score, after.score)


def test_recommend_never_lists_read_articles(model, context: RankingContext) -> None:  # type: ignore[no-untyped-def]
    clicks = news_clicks()
    users = ["u1", "u2", "u3", "stranger"]
    recs = recommend(model, context, AS_OF, users, 10)
    assert list(recs.columns) == ["user_id", "rank", "article_id", "score"]
    read = clicks.loc[clicks["ts"] < AS_OF, ["user_id", "article_id"]]
    assert recs.merge(read, on=["user_id", "article_id"]).empty
    assert (recs.groupby("user_id")["rank"].max() == 10).all()
    assert "stranger" in set(recs["user_id"])  # unknown readers get the global lists
