"""The served chain: every reader ranked, read articles never listed, groups reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core.candidates import ClickHistory
from recs_pipeline.core.ranker import RankerModel, RankingContext, rank_lists, train_ranker
from recs_pipeline.core.serving import ServingInputs, reader_groups, recommendations_as_of
from recs_pipeline_tests.core.test_ranker import AS_OF, SMALL, TZ, news_clicks


@pytest.fixture(scope="module")
def clicks() -> pd.DataFrame:
    return news_clicks()


@pytest.fixture(scope="module")
def model(clicks: pd.DataFrame) -> RankerModel:
    return train_ranker(RankingContext(ClickHistory.from_events(clicks), TZ), AS_OF, SMALL)


def _popular() -> pd.DataFrame:
    return pd.DataFrame(
        {"rank": [1, 2, 3], "article_id": ["h39s0", "h39s1", "h1s0"], "score": [1, 0.5, 0.1]}
    )


def _inputs(clicks: pd.DataFrame, seen: pd.DataFrame, ranker: RankerModel | None) -> ServingInputs:
    return ServingInputs(AS_OF, TZ, clicks, seen, _popular(), ranker=ranker)


def test_every_reader_is_ranked_and_nothing_read_is_listed(
    clicks: pd.DataFrame, model: RankerModel
) -> None:
    before = clicks.loc[clicks["ts"] < AS_OF]
    # Older reads (before the click history) of readers who have not clicked recently.
    old = pd.DataFrame(
        {"user_id": ["ghost", "ghost", "u1"], "article_id": ["h39s0", "h38s1", "h39s1"]}
    )
    seen = pd.concat([before[["user_id", "article_id"]], old]).drop_duplicates()
    recent = clicks.loc[clicks["ts"] >= AS_OF - pd.Timedelta(hours=30)]
    recs = recommendations_as_of(_inputs(recent, seen, model), 5, active_hours=3)
    assert set(recs["source"]) == {"ranker"}
    assert set(recs["user_id"]) == set(seen["user_id"])
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in recs.groupby("user_id")["rank"].apply(list))
    assert recs.merge(seen, on=["user_id", "article_id"]).empty
    groups = recs.groupby("user_id")["group"].first()
    assert groups["ghost"] == "no_history"
    assert {"active", "older", "no_history"} == set(groups)


def test_readers_without_clicks_share_the_ranker_list_minus_their_reads(
    clicks: pd.DataFrame, model: RankerModel
) -> None:
    seen = pd.DataFrame({"user_id": ["a", "b"], "article_id": ["x", "y"]})
    recs = recommendations_as_of(_inputs(clicks, seen, model), 8, active_hours=3)
    context = RankingContext(ClickHistory.from_events(clicks.loc[clicks["ts"] < AS_OF]), TZ)
    one = rank_lists(model, context, AS_OF, np.array([-1]), 8)
    expected = list(context.history.articles.to_numpy()[one.article_code[np.argsort(one.rank)]])
    lists = recs.groupby("user_id")["article_id"].apply(list)
    assert lists["a"] == expected and lists["b"] == expected
    # A read article is taken out and the list moves up (one more from deeper).
    seen_top = pd.DataFrame({"user_id": ["a"], "article_id": [expected[0]]})
    again = recommendations_as_of(_inputs(clicks, seen_top, model), 8, active_hours=3)
    assert again["article_id"].tolist()[:7] == expected[1:]
    assert expected[0] not in set(again["article_id"])


def test_without_a_ranker_everyone_gets_fresh_popularity(clicks: pd.DataFrame) -> None:
    before = clicks.loc[clicks["ts"] < AS_OF]
    seen = before[["user_id", "article_id"]].drop_duplicates()
    recs = recommendations_as_of(_inputs(clicks, seen, None), 5, active_hours=3)
    assert set(recs["source"]) == {"popular"}
    assert recs.merge(seen, on=["user_id", "article_id"]).empty
    # The fresh list is led by what was clicked in the last minutes, not the day's popular.
    last = before.loc[before["ts"] >= AS_OF - pd.Timedelta(minutes=10), "article_id"]
    assert recs.loc[recs["user_id"] == "nobody-read-this", "article_id"].empty
    stranger = recommendations_as_of(_inputs(clicks, seen, None), 5, 3, users=["stranger"])
    assert stranger["article_id"].iloc[0] in set(last)
    assert stranger["group"].tolist() == ["no_history"] * 5


def test_lists_are_filled_from_popular_when_candidates_run_out() -> None:
    clicks = pd.DataFrame(
        {
            "user_id": ["u", "v"],
            "article_id": ["a", "b"],
            "ts": pd.to_datetime(["2026-11-02T10:00Z", "2026-11-02T10:01Z"]),
        }
    )
    popular = pd.DataFrame(
        {"rank": [1, 2, 3], "article_id": ["a", "c", "d"], "score": [1, 0.5, 0.2]}
    )
    inputs = ServingInputs(pd.Timestamp("2026-11-02T11:00Z"), TZ, clicks, clicks, popular)
    recs = recommendations_as_of(inputs, 3, active_hours=48)
    lists = recs.groupby("user_id")["article_id"].apply(list).to_dict()
    assert lists == {"u": ["b", "c", "d"], "v": ["a", "c", "d"]}


def test_reader_groups_by_last_click(clicks: pd.DataFrame) -> None:
    history = ClickHistory.from_events(clicks)
    codes = history.user_codes(["u1", "nobody"])
    groups = reader_groups(history, codes, AS_OF, active_hours=1e6)
    assert groups.tolist() == ["active", "no_history"]
    assert reader_groups(history, codes, AS_OF, active_hours=1e-9).tolist()[1] == "no_history"


def _summary(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"protocol": "two_hour", "group": g, "method": m, "users": u, "ndcg": v}
            for g, m, u, v in rows
        ]
    )


def test_policy_moves_a_group_only_to_a_source_that_beat_the_ranker_and_popularity() -> None:
    from recs_pipeline.core.serving import choose_policy

    summary = _summary(
        [
            ("active", "ranker", 500, 0.40),
            ("active", "als", 500, 0.45),
            ("active", "pop_decay_6m", 500, 0.38),
            ("older", "ranker", 500, 0.20),
            ("older", "als", 500, 0.10),
            ("older", "pop_decay_6m", 500, 0.25),
            ("no_history", "ranker", 50, 0.10),  # too few readers to move
            ("no_history", "als", 50, 0.90),
        ]
    )
    tuned = _summary([("all", "pop_decay_6m", 1000, 0.30), ("all", "pop_decay", 1000, 0.29)])
    policy = choose_policy(pd.concat([summary, tuned]), 0.5, min_readers=100)
    assert policy.sources == {"active": "als", "older": "popular"}
    assert policy.fresh_half_life_hours == pytest.approx(0.1)  # the best pop_decay's: 6 min
    # ALS must beat popularity too; without a ranker score popularity is not a move.
    no_ranker = _summary(
        [
            ("all", "pop_decay", 500, 0.3),
            ("older", "als", 500, 0.2),
            ("older", "pop_decay", 500, 0.3),
        ]
    )
    policy = choose_policy(no_ranker, 0.5, pop_decay_hours=2.0)
    assert policy.sources == {} and policy.fresh_half_life_hours == 2.0
    assert choose_policy(pd.DataFrame(), 0.5).fresh_half_life_hours == 0.5


def test_a_group_served_from_als_gets_als_lists_without_read_articles(
    clicks: pd.DataFrame, model: RankerModel
) -> None:
    from recs_pipeline.core.als import AlsParams, train_als
    from recs_pipeline.core.matrix import build_matrix

    before = clicks.loc[clicks["ts"] < AS_OF]
    seen = before[["user_id", "article_id"]].drop_duplicates()
    als = train_als(build_matrix(seen.assign(weight=1.0)), AlsParams(factors=8, iterations=3))
    inputs = ServingInputs(
        AS_OF, TZ, clicks, seen, _popular(), als=als, ranker=model, policy={"older": "als"}
    )
    recs = recommendations_as_of(inputs, 5, active_hours=3)
    by_group = recs.groupby("group")["source"].agg(set)
    assert by_group["older"] <= {"als", "popular"} and "als" in by_group["older"]
    assert by_group["active"] == {"ranker"}
    assert recs.merge(seen, on=["user_id", "article_id"]).empty
    assert (recs.groupby("user_id").size() == 5).all()
