"""Item-to-item similarity from ALS item factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core import similarity
from recs_pipeline.core.als import AlsModel, AlsParams, train_als
from recs_pipeline.core.matrix import build_matrix
from recs_pipeline.core.similarity import similar_articles

AS_OF = pd.Timestamp("2024-03-10 00:00", tz="UTC")
DAY = pd.Timedelta(days=1)


def _model(items: dict[str, list[float]]) -> AlsModel:
    factors = np.array(list(items.values()), dtype=np.float32)
    return AlsModel(
        user_ids=np.array(["u"], dtype=object),
        article_ids=np.array(list(items), dtype=object),
        user_factors=np.ones((1, factors.shape[1]), dtype=np.float32),
        item_factors=factors,
        params=AlsParams(factors=factors.shape[1]),
        training_seconds=0.0,
    )


def _fresh(ids: list[str]) -> pd.Series:
    return pd.Series([AS_OF] * len(ids), index=ids, dtype="datetime64[ms, UTC]")


def test_planted_near_duplicate_ranks_first_and_self_is_excluded() -> None:
    model = _model(
        {
            "b": [0.0, 1.0, 0.0],
            "a": [1.0, 0.0, 0.0],
            "d": [0.7, 0.7, 0.0],
            "a_dup": [2.0, 0.02, 0.0],  # same direction as a, different length
            "c": [0.0, 0.0, 1.0],
        }
    )
    result = similar_articles(model, _fresh(list(model.article_ids)), AS_OF, DAY, top_k=3)
    assert list(result.columns) == ["article_id", "rank", "similar_article_id", "score"]
    assert (result["article_id"] != result["similar_article_id"]).all()
    a = result.loc[result["article_id"] == "a"]
    assert a["similar_article_id"].tolist() == ["a_dup", "d"]  # b, c are orthogonal: dropped
    assert a["rank"].tolist() == [1, 2]
    np.testing.assert_allclose(a["score"], [2.0 / np.hypot(2.0, 0.02), np.sqrt(0.5)], rtol=1e-5)
    assert result.loc[result["article_id"] == "a_dup", "similar_article_id"].iloc[0] == "a"
    assert result["article_id"].is_monotonic_increasing


def test_candidate_age_decay_is_applied_and_unknown_age_excluded() -> None:
    model = _model(
        {"q": [1.0, 0.0], "old": [1.0, 0.0], "new": [1.0, 0.1], "future": [1.0, 0.2], "x": [1.0, 0]}
    )
    first_seen = pd.Series(
        [AS_OF - 2 * DAY, AS_OF - 2 * DAY, AS_OF - DAY / 2, AS_OF + DAY],
        index=["q", "old", "new", "future"],  # "x" is unknown: treated as very old
        dtype="datetime64[ms, UTC]",
    )
    result = similar_articles(model, first_seen, AS_OF, DAY, top_k=10)
    q = result.loc[result["article_id"] == "q"]
    cos_new = 1.0 / np.hypot(1.0, 0.1)
    cos_future = 1.0 / np.hypot(1.0, 0.2)
    assert q["similar_article_id"].tolist() == ["future", "new", "old"]
    np.testing.assert_allclose(
        q["score"], [cos_future * 1.0, cos_new * 0.5**0.5, 1.0 * 0.25], rtol=1e-5
    )
    assert "x" not in set(result["similar_article_id"])
    assert "x" in set(result["article_id"])  # it still gets its own list


def test_ties_are_broken_by_similar_article_id() -> None:
    model = _model({"q": [1.0, 0.0], "z": [1.0, 1.0], "m": [1.0, 1.0], "k": [1.0, -1.0]})
    result = similar_articles(model, _fresh(["q", "z", "m", "k"]), AS_OF, DAY, top_k=2)
    assert result.loc[result["article_id"] == "q", "similar_article_id"].tolist() == ["k", "m"]


def test_blockwise_result_matches_a_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    ids = [f"a{i:03d}" for i in range(60)]
    model = _model({i: list(v) for i, v in zip(ids, rng.normal(size=(60, 6)), strict=True)})
    first_seen = pd.Series(
        AS_OF - pd.to_timedelta(rng.integers(0, 72, 60), unit="h"), index=ids
    ).astype("datetime64[ms, UTC]")
    whole = similar_articles(model, first_seen, AS_OF, DAY, top_k=5)
    monkeypatch.setattr(similarity, "_BLOCK_CELLS", 7 * 60)  # 7 rows per block
    blocked = similar_articles(model, first_seen, AS_OF, DAY, top_k=5)
    pd.testing.assert_frame_equal(whole, blocked)
    assert (whole.groupby("article_id").size() <= 5).all()
    assert (whole["score"] > 0).all()


def test_trained_model_groups_co_read_articles() -> None:
    rows = [
        (f"u{g}{u}", f"{'xy'[g]}{i}", 10.0) for g in range(2) for u in range(15) for i in range(6)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "article_id", "weight"])
    model = train_als(build_matrix(frame), AlsParams(factors=4, iterations=10, seed=1))
    first_seen = _fresh(sorted(set(frame["article_id"])))
    result = similar_articles(model, first_seen, AS_OF, DAY, top_k=3)
    top = result.loc[result["rank"] == 1]
    assert len(top) == 12
    assert (top["article_id"].str[0] == top["similar_article_id"].str[0]).all()


def test_validation() -> None:
    model = _model({"a": [1.0], "b": [1.0]})
    with pytest.raises(ValueError, match="top_k"):
        similar_articles(model, _fresh(["a", "b"]), AS_OF, DAY, top_k=0)
    with pytest.raises(ValueError, match="half_life"):
        similar_articles(model, _fresh(["a", "b"]), AS_OF, pd.Timedelta(0))


def test_among_keeps_lists_and_neighbours_to_the_given_articles() -> None:
    model = _model({"a": [1.0, 0.0], "a_old": [1.0, 0.01], "a_new": [1.0, 0.05], "b": [0.0, 1.0]})
    everything = similar_articles(model, _fresh(list(model.article_ids)), AS_OF, DAY, top_k=2)
    assert everything.loc[everything["article_id"] == "a", "similar_article_id"].iloc[0] == "a_old"
    recent = similar_articles(
        model, _fresh(list(model.article_ids)), AS_OF, DAY, top_k=2, among=pd.Index(["a", "a_new"])
    )
    assert set(recent["article_id"]) == {"a", "a_new"}
    assert set(recent["similar_article_id"]) <= {"a", "a_new"}
    assert recent.loc[recent["article_id"] == "a", "similar_article_id"].tolist() == ["a_new"]
