"""Next-day time hold-out: truth sets and the random baseline.

Training on days up to D and testing on D+1 mirrors production (yesterday's model serves today),
so it is the protocol the offline metrics use. Only articles *new* to a user count as truth: a
re-read is something the recommender is told not to suggest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = ["next_day_truth", "random_recommendations", "seen_articles"]


def _pairs(events: pd.DataFrame) -> pd.DataFrame:
    missing = {"user_id", "article_id"} - set(events.columns)
    if missing:
        raise ValueError(f"events frame lacks columns {sorted(missing)}")
    pairs = events.loc[:, ["user_id", "article_id"]].dropna().astype(str)
    return pairs.drop_duplicates(ignore_index=True)


def seen_articles(events: pd.DataFrame) -> dict[str, set[str]]:
    """Distinct articles per user (what the baselines and recommenders must not suggest)."""
    pairs = _pairs(events)
    return {
        str(user): set(group.tolist())
        for user, group in pairs.groupby("user_id", sort=True)["article_id"]
    }


def next_day_truth(train_events: pd.DataFrame, test_events: pd.DataFrame) -> dict[str, set[str]]:
    """Truth sets for users active in both periods: test-period articles they had not read before.

    Users seen only in the test period are cold-start users (served popularity, evaluated
    separately) and users whose test clicks were all re-reads have nothing to predict; both are
    left out.
    """
    train = _pairs(train_events)
    test = _pairs(test_events)
    test = test.loc[test["user_id"].isin(set(train["user_id"]))]
    merged = test.merge(train, on=["user_id", "article_id"], how="left", indicator=True)
    new = merged.loc[merged["_merge"] == "left_only", ["user_id", "article_id"]]
    return {
        str(user): set(group.tolist())
        for user, group in new.groupby("user_id", sort=True)["article_id"]
    }


def random_recommendations(
    users: Iterable[str],
    candidate_articles: Iterable[str],
    seen: Mapping[str, set[str]],
    k: int,
    seed: int,
) -> dict[str, list[str]]:
    """``k`` distinct random unseen candidates per user: the floor any model has to beat.

    Candidates are sorted first, so the output depends only on ``seed`` and the inputs' contents,
    not on set iteration order.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    candidates = np.array(sorted({str(a) for a in candidate_articles}), dtype=object)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    for user in users:
        user_seen = seen.get(user, set())
        # Drawing k + |seen| without replacement always leaves >= k unseen when that many exist.
        draw = min(len(candidates), k + len(user_seen))
        picked = candidates[rng.choice(len(candidates), size=draw, replace=False)]
        out[user] = [str(a) for a in picked if a not in user_seen][:k]
    return out
