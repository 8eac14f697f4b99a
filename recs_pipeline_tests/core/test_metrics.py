"""Ranking metrics and the next-day hold-out helpers, on hand-computed examples."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recs_pipeline.core.holdout import next_day_truth, random_recommendations, seen_articles
from recs_pipeline.core.metrics import RankingMetrics, ranking_metrics


def test_hits_at_ranks_one_and_three() -> None:
    result = ranking_metrics({"u": ["t1", "x", "t2", "y"]}, {"u": {"t1", "t2"}}, k=10)
    assert result.users == 1
    assert result.hit_rate == 1.0
    assert result.recall == 1.0
    assert result.ndcg == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert result.mrr == 1.0
    assert result.coverage == pytest.approx(4 / 2)


def test_means_over_users_including_a_miss_and_a_user_without_recommendations() -> None:
    recommendations = {
        "hit3": ["x", "y", "t", "z"],  # first hit at rank 3, |truth| = 3
        "miss": ["x", "y"],
        "ignored": ["t", "q"],  # not a test user
    }
    truth = {"hit3": {"t", "s", "r"}, "miss": {"m"}, "nolist": {"n"}, "empty": set()}
    result = ranking_metrics(recommendations, truth, k=10)
    ideal_3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert result.users == 3
    assert result.hit_rate == pytest.approx(1 / 3)
    assert result.recall == pytest.approx((1 / 3) / 3)
    assert result.ndcg == pytest.approx((1 / math.log2(4)) / ideal_3 / 3)
    assert result.mrr == pytest.approx((1 / 3) / 3)
    # recommended to test users: x, y, t, z; truth union: t, s, r, m, n
    assert result.coverage == pytest.approx(4 / 5)


def test_recall_and_ideal_dcg_are_capped_at_k() -> None:
    truth = {"u": {"a", "b", "c", "d", "e"}}
    result = ranking_metrics({"u": ["x", "a", "b"]}, truth, k=2)  # "b" is beyond K
    assert result.recall == pytest.approx(1 / 2)
    assert result.ndcg == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert result.mrr == pytest.approx(1 / 2)
    assert result.coverage == pytest.approx(2 / 5)


def test_duplicates_in_a_list_count_once() -> None:
    result = ranking_metrics({"u": ["a", "a", "b"]}, {"u": {"a", "z"}}, k=2)
    # deduplicated list is a, b: one hit out of min(2, 2)
    assert result.recall == pytest.approx(1 / 2)
    assert result.ndcg == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_no_test_users_and_bad_k() -> None:
    assert ranking_metrics({"u": ["a"]}, {"u": set()}) == RankingMetrics(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        ranking_metrics({}, {}, k=0)


def test_next_day_truth() -> None:
    train = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "article_id": ["a", "b", "a", "c"]})
    test = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "new", "u3"],
            "article_id": ["b", "c", "c", "a", "a", "d"],
        }
    )
    # u1: b is a re-read, c new (twice); u2: only a re-read -> dropped; "new": not in train.
    assert next_day_truth(train, test) == {"u1": {"c"}, "u3": {"d"}}
    assert seen_articles(train) == {"u1": {"a", "b"}, "u2": {"a"}, "u3": {"c"}}


def test_random_recommendations_are_unseen_distinct_and_seeded() -> None:
    candidates = {f"a{i}" for i in range(30)}
    seen = {"u1": {f"a{i}" for i in range(25)}, "u2": set()}
    first = random_recommendations(["u1", "u2", "u3"], candidates, seen, k=10, seed=3)
    again = random_recommendations(["u1", "u2", "u3"], sorted(candidates), seen, k=10, seed=3)
    other = random_recommendations(["u1", "u2", "u3"], candidates, seen, k=10, seed=4)
    assert first == again
    assert first != other
    assert sorted(first["u1"]) == [f"a{i}" for i in range(25, 30)]  # only 5 unseen remain
    for user in ("u2", "u3"):
        assert len(first[user]) == 10
        assert len(set(first[user])) == 10
        assert set(first[user]) <= candidates
