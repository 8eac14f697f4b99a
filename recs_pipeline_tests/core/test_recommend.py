"""Per-user recommendations, and the planted-structure check that ALS beats random."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core import recommend
from recs_pipeline.core.als import AlsModel, AlsParams, train_als
from recs_pipeline.core.holdout import next_day_truth, random_recommendations, seen_articles
from recs_pipeline.core.matrix import InteractionMatrix, build_matrix
from recs_pipeline.core.metrics import ranking_metrics
from recs_pipeline.core.recommend import user_recommendations


def _model(users: dict[str, list[float]], items: dict[str, list[float]]) -> AlsModel:
    return AlsModel(
        user_ids=np.array(list(users), dtype=object),
        article_ids=np.array(list(items), dtype=object),
        user_factors=np.array(list(users.values()), dtype=np.float32),
        item_factors=np.array(list(items.values()), dtype=np.float32),
        params=AlsParams(factors=2),
        training_seconds=0.0,
    )


def _popular(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ids) + 1),
            "article_id": ids,
            "score": np.linspace(1.0, 0.5, len(ids)),
        }
    )


def _history(pairs: list[tuple[str, str]]) -> InteractionMatrix:
    frame = pd.DataFrame(pairs, columns=["user_id", "article_id"]).assign(weight=1.0)
    return build_matrix(frame)


ITEMS = {"a": [1.0, 0.0], "b": [0.8, 0.0], "c": [0.6, 0.0], "d": [0.4, 0.0], "e": [0.2, 0.0]}


def test_hand_scored_lists_exclude_history_and_fill_with_popular() -> None:
    model = _model({"u1": [1.0, 0.0], "u2": [2.0, 1.0]}, ITEMS)
    matrix = _history([("u1", "a"), ("u1", "c"), ("u1", "e"), ("u2", "b")])
    popular = _popular(["c", "p1", "d", "p2", "p3"])
    result = user_recommendations(model, matrix, popular, n=4)
    assert list(result.columns) == ["user_id", "rank", "article_id", "score", "source"]

    u1 = result.loc[result["user_id"] == "u1"]
    # ALS leaves only b, d unread; c is read, d already listed -> p1, p2 from popular.
    assert u1["article_id"].tolist() == ["b", "d", "p1", "p2"]
    assert u1["source"].tolist() == ["als", "als", "popular", "popular"]
    assert u1["rank"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(u1["score"], [0.8, 0.4, 0.875, 0.625])

    u2 = result.loc[result["user_id"] == "u2"]
    assert u2["article_id"].tolist() == ["a", "c", "d", "e"]
    np.testing.assert_allclose(u2["score"], [2.0, 1.2, 0.8, 0.4], rtol=1e-6)
    assert (u2["source"] == "als").all()


def test_unknown_users_get_the_popular_list_and_duplicates_are_dropped() -> None:
    model = _model({"u1": [1.0, 0.0]}, ITEMS)
    matrix = _history([("u1", "a")])
    popular = _popular(["p1", "p2", "p3"])
    result = user_recommendations(model, matrix, popular, n=2, users=["new", "u1", "new"])
    assert result["user_id"].tolist() == ["new", "new", "u1", "u1"]
    new = result.loc[result["user_id"] == "new"]
    assert new["article_id"].tolist() == ["p1", "p2"]
    assert (new["source"] == "popular").all()
    assert result.loc[result["user_id"] == "u1", "article_id"].tolist() == ["b", "c"]


def test_popular_fill_for_an_unknown_user_still_skips_matrix_history() -> None:
    model = _model({"u1": [1.0, 0.0]}, ITEMS)
    matrix = _history([("u1", "a"), ("ghost", "p1")])  # in the matrix, not in the model
    result = user_recommendations(model, matrix, _popular(["p1", "p2", "p3"]), n=5)
    ghost = result.loc[result["user_id"] == "ghost"]
    assert ghost["article_id"].tolist() == ["p2", "p3"]  # popular list runs out: shorter list


def test_ties_go_to_the_smaller_article_id() -> None:
    model = _model({"u": [1.0, 0.0]}, {"z": [1.0, 0.0], "m": [1.0, 0.0], "k": [0.5, 0.0]})
    matrix = _history([("u", "k")])
    result = user_recommendations(model, matrix, _popular([]), n=2)
    assert result["article_id"].tolist() == ["m", "z"]


def _random_interactions(seed: int, n_users: int = 60, n_articles: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    nnz = 600
    return pd.DataFrame(
        {
            "user_id": [f"u{i:03d}" for i in rng.integers(0, n_users, nnz)],
            "article_id": [f"a{i:03d}" for i in rng.integers(0, n_articles, nnz)],
            "weight": rng.uniform(1, 30, nnz),
        }
    )


def test_trained_recommendations_never_contain_read_articles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = _random_interactions(3)
    matrix = build_matrix(frame)
    model = train_als(matrix, AlsParams(factors=6, iterations=5, seed=3))
    popular = _popular([f"a{i:03d}" for i in range(30)] + ["brand_new"])
    result = user_recommendations(model, matrix, popular, n=20)

    read = set(zip(frame["user_id"], frame["article_id"], strict=True))
    listed = set(zip(result["user_id"], result["article_id"], strict=True))
    assert not listed & read
    assert len(listed) == len(result)  # no duplicate (user, article)
    sizes = result.groupby("user_id").size()
    assert set(sizes.index) == set(matrix.user_ids)
    # 31 distinct candidates (30 in the model + one popular-only): a user who read r of them can
    # get at most 31 - r, otherwise exactly 20.
    reads = frame.drop_duplicates(["user_id", "article_id"]).groupby("user_id").size()
    expected = (31 - reads).clip(upper=20)
    pd.testing.assert_series_equal(sizes, expected, check_names=False)
    assert (expected < 20).any() and (expected == 20).any()  # both paths are exercised
    ranks = result.groupby("user_id")["rank"].apply(list)
    assert all(r == list(range(1, len(r) + 1)) for r in ranks)
    # Popular rows only ever follow the ALS rows of a user.
    als_rank = result.loc[result["source"] == "als"].groupby("user_id")["rank"].max()
    pop_rank = result.loc[result["source"] == "popular"].groupby("user_id")["rank"].min()
    assert (als_rank.reindex(pop_rank.index) < pop_rank).all()

    monkeypatch.setattr(recommend, "_BLOCK_CELLS", 31 * 7)  # 7 users per block
    blocked = user_recommendations(model, matrix, popular, n=20)
    pd.testing.assert_frame_equal(result, blocked)


def test_validation() -> None:
    model = _model({"u1": [1.0, 0.0]}, ITEMS)
    with pytest.raises(ValueError, match="n must"):
        user_recommendations(model, _history([("u1", "a")]), _popular(["a"]), n=0)


def _planted_events(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """4 groups x 25 users; each group reads its own 20 articles (plus a little noise).

    Day 1 is training, day 2 the hold-out: every user clicks 3 more articles of their group.
    """
    rng = np.random.default_rng(seed)
    groups, users_per_group, articles_per_group = 4, 25, 20
    train: list[tuple[str, str, float]] = []
    test: list[tuple[str, str]] = []
    for g in range(groups):
        own = [f"g{g}a{i:02d}" for i in range(articles_per_group)]
        others = [f"g{h}a{i:02d}" for h in range(groups) if h != g for i in range(20)]
        for u in range(users_per_group):
            user = f"g{g}u{u:02d}"
            for article in rng.choice(own, size=6, replace=False):
                train.append((user, str(article), float(rng.uniform(10, 120))))
            train.append((user, str(rng.choice(others)), float(rng.uniform(10, 120))))
            for article in rng.choice(own, size=3, replace=False):
                test.append((user, str(article)))
    return (
        pd.DataFrame(train, columns=["user_id", "article_id", "weight"]),
        pd.DataFrame(test, columns=["user_id", "article_id"]),
    )


def test_als_beats_random_on_planted_groups_with_a_time_holdout() -> None:
    train, test = _planted_events(seed=11)
    truth = next_day_truth(train, test)
    assert len(truth) > 80  # most users have a new article on day 2

    matrix = build_matrix(train)
    # As many factors as planted groups; with many more, ALS on 100 users starts fitting noise.
    model = train_als(matrix, AlsParams(factors=4, iterations=15, seed=1))
    recs = user_recommendations(model, matrix, _popular([]), n=10, users=sorted(truth))
    als_lists = {str(user): group["article_id"].tolist() for user, group in recs.groupby("user_id")}
    read = seen_articles(train)
    assert all(not set(items) & read[user] for user, items in als_lists.items())

    random_lists = random_recommendations(
        sorted(truth), matrix.article_ids, seen=read, k=10, seed=5
    )
    als = ranking_metrics(als_lists, truth, k=10)
    rnd = ranking_metrics(random_lists, truth, k=10)
    assert als.users == rnd.users == len(truth)
    # ALS picks 10 of a user's ~14 unread own-group articles (~0.9 hit rate given ~2 new truth
    # articles per user); random picks 10 of ~73 unseen articles (~0.25).
    assert als.hit_rate >= 0.8
    assert rnd.hit_rate <= 0.45
    assert als.hit_rate - rnd.hit_rate >= 0.4
    assert als.ndcg > 2 * rnd.ndcg


def test_popular_only_recommendations_exclude_reads() -> None:
    from recs_pipeline.core.recommend import popular_only_recommendations

    interactions = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2"], "article_id": ["p1", "x", "p2"], "weight": [1.0, 1.0, 1.0]}
    )
    popular = pd.DataFrame(
        {"rank": [1, 2, 3], "article_id": ["p1", "p2", "p3"], "score": [1.0, 0.5, 0.2]}
    )
    recs = popular_only_recommendations(interactions, popular, n=2)
    lists = recs.groupby("user_id")["article_id"].apply(list).to_dict()
    assert lists == {"u1": ["p2", "p3"], "u2": ["p1", "p3"]}
    assert set(recs["source"]) == {"popular"}


def test_article_registry_keeps_the_widest_window_and_newest_known_title() -> None:
    from recs_pipeline.core.serving import article_registry

    stamp = pd.Timestamp
    pages = pd.DataFrame(
        {
            "article_id": ["a", "a", "a", "b"],
            "path": ["/a-1", "/a-1", "/a-1", "/b-2"],
            "first_seen": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-03", "2026-01-01"]),
            "last_seen": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-04", "2026-01-01"]),
            "title": ["Second", "First", None, None],
        }
    )
    registry = article_registry(pages).set_index("article_id")
    assert registry.loc["a", "first_seen"] == stamp("2026-01-01")
    assert registry.loc["a", "last_seen"] == stamp("2026-01-04")
    # The newest row has no title: the newest known one is kept, never blanked.
    assert registry.loc["a", "title"] == "Second"
    assert pd.isna(registry.loc["b", "title"])
