"""Time-decayed popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core.popularity import popular_articles

AS_OF = pd.Timestamp("2024-03-10 12:00", tz="UTC")
HOUR = pd.Timedelta(hours=1)


def _rows(rows: list[tuple[str, float, pd.Timedelta]]) -> pd.DataFrame:
    """(article, weight, age before AS_OF) -> interactions-like frame (negative age = future)."""
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(len(rows))],
            "article_id": [article for article, _, _ in rows],
            "weight": [weight for _, weight, _ in rows],
            "last_ts": pd.Series([AS_OF - age for _, _, age in rows], dtype="datetime64[ms, UTC]"),
        }
    )


def test_hand_computed_decay_ignores_future_and_breaks_ties_by_id() -> None:
    frame = _rows(
        [
            ("d", 24.0, 3 * HOUR),  # 24 * 0.5**3 = 3
            ("a", 4.0, 1 * HOUR),  # 4 * 0.5 = 2
            ("a", 4.0, 2 * HOUR),  # 4 * 0.25 = 1  -> a = 3
            ("b", 2.0, 0.5 * HOUR),  # 2 * 0.5**0.5 = 1.41421...
            ("c", 100.0, pd.Timedelta(0)),  # exactly at as_of: ignored
            ("c", 100.0, -1 * HOUR),  # future: ignored
            ("a", 1000.0, -2 * HOUR),  # future row of a known article: ignored
        ]
    )
    result = popular_articles(frame, AS_OF, HOUR, top_n=10)
    assert list(result.columns) == ["rank", "article_id", "score"]
    assert result["rank"].tolist() == [1, 2, 3]
    assert result["article_id"].tolist() == ["a", "d", "b"]
    np.testing.assert_allclose(result["score"], [1.0, 1.0, 2.0 * 0.5**0.5 / 3.0])
    assert result["rank"].dtype == np.int64


def test_top_n_truncates_and_order_of_rows_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    frame = _rows(
        [
            (f"a{i % 13}", float(w), pd.Timedelta(minutes=int(m)))
            for i, (w, m) in enumerate(
                zip(rng.uniform(1, 10, 200), rng.integers(1, 3000, 200), strict=True)
            )
        ]
    )
    top = popular_articles(frame, AS_OF, 6 * HOUR, top_n=5)
    assert len(top) == 5
    assert top["rank"].tolist() == [1, 2, 3, 4, 5]
    assert top["score"].iloc[0] == 1.0
    assert top["score"].is_monotonic_decreasing
    shuffled = popular_articles(frame.sample(frac=1.0, random_state=2), AS_OF, 6 * HOUR, top_n=5)
    pd.testing.assert_frame_equal(top, shuffled)


def test_long_half_life_converges_to_weight_sums() -> None:
    frame = _rows([("a", 3.0, HOUR), ("b", 6.0, 2 * HOUR), ("b", 3.0, 5 * HOUR)])
    result = popular_articles(frame, AS_OF, pd.Timedelta(days=100_000), top_n=2)
    assert result["article_id"].tolist() == ["b", "a"]
    np.testing.assert_allclose(result["score"], [1.0, 3.0 / 9.0], rtol=1e-6)


def test_very_old_window_does_not_underflow() -> None:
    # 5000 half-lives: 0.5 ** 5000 is 0.0 in float64, the relative scores are not.
    far = pd.Timedelta(hours=5000)
    frame = _rows([("a", 1.0, far), ("b", 1.0, far + HOUR)])
    result = popular_articles(frame, AS_OF, HOUR, top_n=5)
    assert result["article_id"].tolist() == ["a", "b"]
    np.testing.assert_allclose(result["score"], [1.0, 0.5])


def test_only_future_rows_gives_an_empty_frame() -> None:
    frame = _rows([("a", 1.0, -HOUR), ("b", 2.0, pd.Timedelta(0))])
    result = popular_articles(frame, AS_OF, HOUR, top_n=5)
    assert result.empty
    assert list(result.columns) == ["rank", "article_id", "score"]


def test_zero_weight_articles_are_left_out() -> None:
    frame = _rows([("a", 1.0, HOUR), ("z", 0.0, HOUR)])
    assert popular_articles(frame, AS_OF, HOUR, top_n=5)["article_id"].tolist() == ["a"]


def test_custom_columns_and_validation() -> None:
    frame = _rows([("a", 1.0, HOUR), ("b", 5.0, HOUR)]).rename(
        columns={"weight": "views", "last_ts": "ts"}
    )
    result = popular_articles(frame, AS_OF, HOUR, top_n=1, weight="views", time_col="ts")
    assert result["article_id"].tolist() == ["b"]
    with pytest.raises(ValueError, match="half_life"):
        popular_articles(frame, AS_OF, pd.Timedelta(0), top_n=1, weight="views", time_col="ts")
    with pytest.raises(ValueError, match="lacks columns"):
        popular_articles(frame, AS_OF, HOUR, top_n=1)
