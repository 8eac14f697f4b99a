"""Time-decayed popularity: the fallback list for cold users and for filling short ALS lists.

News goes stale within hours, so raw counts over a trailing window would keep yesterday's big
story on top; an exponential decay with a configurable half-life lets fresh articles overtake it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["popular_articles"]

POPULAR_OUTPUT_COLUMNS = ("rank", "article_id", "score")


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": pd.Series(dtype=np.int64),
            "article_id": pd.Series(dtype=str),
            "score": pd.Series(dtype=np.float64),
        }
    )


def popular_articles(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp,
    half_life: pd.Timedelta,
    top_n: int,
    weight: str = "weight",
    time_col: str = "last_ts",
) -> pd.DataFrame:
    """Top ``top_n`` articles by ``sum(weight * 0.5 ** ((as_of - time) / half_life))``.

    Rows at or after ``as_of`` (and rows without a time) are ignored so that a back-fill never
    sees the future. Scores are scaled so the best article scores 1.0 (only the ranking and the
    relative size matter downstream); articles whose score is 0 are left out. Ties are broken by
    ``article_id`` so reruns produce identical output.
    """
    if half_life <= pd.Timedelta(0):
        raise ValueError("half_life must be positive")
    if top_n < 0:
        raise ValueError("top_n must be >= 0")
    missing = {"article_id", weight, time_col} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions frame lacks columns {sorted(missing)}")

    past = interactions.loc[interactions[time_col] < as_of]  # NaT compares False: dropped
    if past.empty or top_n == 0:
        return _empty()
    weights = pd.to_numeric(past[weight]).to_numpy(dtype=np.float64)
    if np.isnan(weights).any() or (weights < 0).any():
        raise ValueError(f"column {weight!r} has missing or negative values")

    age_seconds = (as_of - past[time_col]).dt.total_seconds().to_numpy(dtype=np.float64)
    ages = age_seconds / half_life.total_seconds()
    # Measuring ages from the newest row only rescales every score by the same factor (undone by
    # the normalisation below) and keeps 0.5 ** age away from float underflow for old windows.
    decay = np.exp2(-(ages - ages.min()))
    contributions = pd.Series(weights * decay, index=past.index)
    scores = contributions.groupby(past["article_id"].astype(str), sort=False).sum()
    scores = scores[scores > 0]
    if scores.empty:
        return _empty()

    frame = pd.DataFrame(
        {"article_id": scores.index.to_numpy(), "score": scores.to_numpy() / scores.max()}
    )
    frame = frame.sort_values(["score", "article_id"], ascending=[False, True], kind="mergesort")
    frame = frame.head(top_n).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame.loc[:, list(POPULAR_OUTPUT_COLUMNS)]
