"""Per-reader recommendations as of a moment: the ranker first, the ALS / popular path as fallback.

One function used by the ``user_recommendations`` asset and by ``recs recommend``, so what the
command prints is what the pipeline publishes. Readers active in the last ``active_hours`` are
ranked by the LightGBM ranker (when one is given); every other reader of the window, and every
reader when the ranker is missing or switched off, gets the ALS top-N filled with popular
articles. Nothing a reader opened in the window is recommended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recs_pipeline.core.als import AlsModel
from recs_pipeline.core.candidates import ClickHistory, similar_matrix
from recs_pipeline.core.matrix import build_matrix
from recs_pipeline.core.ranker import RankerModel, RankingContext, recommend
from recs_pipeline.core.recommend import popular_only_recommendations, user_recommendations

__all__ = ["ServingInputs", "article_registry", "recommendations_as_of"]

COLUMNS = ("user_id", "rank", "article_id", "score", "source")


@dataclass
class ServingInputs:
    """Everything a list is computed from, all cut at ``moment``."""

    moment: pd.Timestamp
    tz: ZoneInfo
    #: Page views before the moment (``user_id, article_id, ts``): the ranker's history.
    clicks: pd.DataFrame
    #: (user_id, article_id) pairs opened in the engagement window: never recommended.
    seen: pd.DataFrame
    #: The popular list (``rank, article_id, score``): the fallback's fill.
    popular: pd.DataFrame
    als: AlsModel | None = None
    similar: pd.DataFrame | None = None
    ranker: RankerModel | None = None
    #: Article -> section, for the category-affinity feature (None: pages have no sections).
    categories: pd.Series | None = None


def recommendations_as_of(
    inputs: ServingInputs,
    n: int,
    active_hours: float,
    users: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``user_id, rank, article_id, score, source`` (``ranker``, ``als`` or ``popular``).

    ``users`` defaults to every reader of the window (``seen``); other requested readers are
    served too (unknown ones get the popular list).
    """
    seen = inputs.seen[["user_id", "article_id"]].astype(str).drop_duplicates()
    requested = (
        pd.Index(pd.unique(seen["user_id"]), dtype=object)
        if users is None
        else pd.Index(pd.unique(np.asarray(users, dtype=object).astype(str)), dtype=object)
    )
    frames: list[pd.DataFrame] = []
    ranked_users: set[str] = set()
    if inputs.ranker is not None and len(requested):
        clicks = inputs.clicks.loc[inputs.clicks["ts"] < inputs.moment]
        recent = clicks.loc[clicks["ts"] >= inputs.moment - pd.Timedelta(hours=active_hours)]
        active = requested[requested.isin(set(recent["user_id"].astype(str)))]
        if len(active):
            history = ClickHistory.from_events(clicks)
            context = RankingContext(
                history=history,
                tz=inputs.tz,
                als=inputs.als,
                similar=similar_matrix(history, inputs.similar)
                if inputs.similar is not None
                else None,
                categories=inputs.categories,
            )
            extra = int(seen.groupby("user_id").size().max()) if len(seen) else 0
            ranked = recommend(inputs.ranker, context, inputs.moment, active, n + min(extra, 30))
            ranked = _drop_seen(ranked, seen)
            ranked = ranked.sort_values(["user_id", "rank"], kind="mergesort")
            ranked["rank"] = ranked.groupby("user_id").cumcount() + 1
            ranked = ranked.loc[ranked["rank"] <= n].assign(source="ranker")
            frames.append(ranked)
            ranked_users = set(ranked["user_id"])
    rest = [user for user in requested if user not in ranked_users]
    if rest:
        window = seen.assign(weight=1.0)
        if inputs.als is None:
            mine = window.loc[window["user_id"].isin(rest)]
            fallback = popular_only_recommendations(mine, inputs.popular, n)
            cold = [user for user in rest if user not in set(mine["user_id"])]
            if cold:
                fallback = pd.concat(
                    [fallback, _popular_for(cold, inputs.popular, n)], ignore_index=True
                )
        else:
            fallback = user_recommendations(
                inputs.als, build_matrix(window), inputs.popular, n=n, users=rest
            )
        frames.append(fallback)
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in COLUMNS})
    out = pd.concat(frames, ignore_index=True)[list(COLUMNS)]
    return out.astype({"user_id": str, "article_id": str, "rank": np.int64, "score": np.float64})


def _drop_seen(recs: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    merged = recs.merge(seen, on=["user_id", "article_id"], how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only"].drop(columns="_merge")


def _popular_for(users: list[str], popular: pd.DataFrame, n: int) -> pd.DataFrame:
    top = popular.sort_values("rank", kind="mergesort").head(n)
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(users, dtype=object), len(top)),
            "rank": np.tile(np.arange(1, len(top) + 1), len(users)),
            "article_id": np.tile(top["article_id"].astype(str).to_numpy(), len(users)),
            "score": np.tile(top["score"].to_numpy(dtype=np.float64), len(users)),
            "source": "popular",
        }
    )


def article_registry(pages: pd.DataFrame) -> pd.DataFrame:
    """One row per article of ``pages`` for the serving ``article`` table.

    The window is the widest seen; path, title and publish time are the newest known (by
    ``last_seen``), null only where no page row has one (no page fetcher, or the CMS said
    nothing), so a publish never blanks what the registry already holds.
    """
    described = [column for column in ("path", "title", "published_at") if column in pages]
    newest_last = pages.sort_values("last_seen", kind="stable")
    return (
        newest_last.groupby("article_id", sort=True)
        .agg(
            first_seen=("first_seen", "min"),
            last_seen=("last_seen", "max"),
            # ``last`` skips nulls: the newest non-null value of each column.
            **{column: (column, "last") for column in described},
        )
        .reset_index()
    )
