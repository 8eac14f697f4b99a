"""From events to reads: per-day engagement, the article registry, and trailing-window interactions.

Thresholds are the seed system's, from the site's YAML: a read counts when 30 s <= dwell <= 600 s
on a day, a user needs more than 60 s in total and at least 3 articles, an article at least 6
readers, over the last 28 days. Click-only sources (no heartbeats) have no dwell: their
confidence is the number of views and the dwell thresholds do not apply.
"""

from __future__ import annotations

import pandas as pd

from recs_pipeline.core import schemas
from recs_pipeline.core.site import EngagementConfig


def daily_engagement(
    events: pd.DataFrame, day: str, as_of: pd.Timestamp, heartbeat_seconds: int
) -> pd.DataFrame:
    """Views, heartbeats and dwell per (user, article) over one day's events before ``as_of``."""
    if events.empty:
        return _empty(schemas.ENGAGEMENT_COLUMNS)
    events = events.loc[events["ts"] < as_of]
    if events.empty:
        return _empty(schemas.ENGAGEMENT_COLUMNS)
    # Sources that measure engagement time themselves (GA4) add it to the heartbeats' dwell.
    engaged = events["engaged_ms"] if "engaged_ms" in events else pd.Series(0, index=events.index)
    grouped = events.assign(
        is_view=(events["event_name"] == "page_view").astype("int32"),
        is_ping=(events["event_name"] == "page_ping").astype("int32"),
        engaged=engaged.fillna(0).astype("int64"),
    ).groupby(["user_id", "article_id"], observed=True, sort=True)
    frame = grouped.agg(
        views=("is_view", "sum"),
        pings=("is_ping", "sum"),
        engaged=("engaged", "sum"),
        first_ts=("ts", "min"),
        last_ts=("ts", "max"),
    ).reset_index()
    frame["dwell_seconds"] = (frame["pings"] * heartbeat_seconds + frame["engaged"] / 1000).astype(
        "float64"
    )
    frame[schemas.DATE] = day
    return frame.astype({"views": "int32", "pings": "int32"})[list(schemas.ENGAGEMENT_COLUMNS)]


def daily_pages(events: pd.DataFrame, day: str) -> pd.DataFrame:
    """Articles seen on a day with their most frequent path, first/last view and readers."""
    if events.empty:
        return _empty(schemas.PAGE_COLUMNS)
    views = events.loc[events["event_name"] == "page_view"]
    source = views if not views.empty else events
    grouped = source.groupby("article_id", observed=True, sort=True)
    frame = grouped.agg(
        first_seen=("ts", "min"),
        last_seen=("ts", "max"),
        views=("event_id", "size"),
        readers=("user_id", "nunique"),
    ).reset_index()
    paths = (
        source.groupby(["article_id", "path"], observed=True)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["article_id", "n", "path"], ascending=[True, False, True])
        .drop_duplicates("article_id")
        .set_index("article_id")["path"]
    )
    frame["path"] = frame["article_id"].map(paths)
    frame[schemas.DATE] = day
    return frame.astype({"views": "int64", "readers": "int64"})[list(schemas.PAGE_COLUMNS)]


def window_interactions(
    engagement: pd.DataFrame,
    day: str,
    as_of: pd.Timestamp,
    rules: EngagementConfig,
    has_dwell: bool,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The user x article interactions of the trailing window ending at ``as_of``.

    ``engagement`` holds the window's daily rows. A row touching ``as_of`` or later means that day
    was computed as of a later moment: that would leak the future into the model, so it is an
    error rather than something to trim.
    """
    counts: dict[str, int] = {"engagement_rows": len(engagement)}
    if engagement.empty:
        return _empty(schemas.INTERACTION_COLUMNS), counts | {"interactions": 0}
    future = engagement["last_ts"] >= as_of
    if future.any():
        days = sorted(engagement.loc[future, schemas.DATE].unique())
        raise ValueError(
            f"engagement of {days} has events at or after as_of {as_of.isoformat()}: "
            "materialise engagement with the same as_of before interactions"
        )
    rows = engagement
    first_seen = rows.groupby("article_id", observed=True)["first_ts"].min()
    if has_dwell:
        in_range = rows["dwell_seconds"].between(rules.min_dwell_seconds, rules.max_dwell_seconds)
        counts["dropped_dwell_out_of_range"] = int((~in_range).sum())
        rows = rows.loc[in_range]
    pairs = (
        rows.groupby(["user_id", "article_id"], observed=True, sort=True)
        .agg(
            views=("views", "sum"),
            dwell_seconds=("dwell_seconds", "sum"),
            last_ts=("last_ts", "max"),
        )
        .reset_index()
    )
    pairs["article_first_seen"] = pairs["article_id"].map(first_seen)
    if rules.max_article_age_days is not None:
        oldest = as_of - pd.Timedelta(days=rules.max_article_age_days)
        young = pairs["article_first_seen"] >= oldest
        counts["dropped_article_too_old"] = int((~young).sum())
        pairs = pairs.loc[young]
    if has_dwell:
        user_dwell = pairs.groupby("user_id", observed=True)["dwell_seconds"].transform("sum")
        engaged = user_dwell > rules.min_user_dwell_seconds
        counts["dropped_user_low_dwell"] = int((~engaged).sum())
        pairs = pairs.loc[engaged]
    readers = pairs.groupby("article_id", observed=True)["user_id"].transform("size")
    popular_enough = readers >= rules.min_article_readers
    counts["dropped_article_few_readers"] = int((~popular_enough).sum())
    pairs = pairs.loc[popular_enough]
    reads = pairs.groupby("user_id", observed=True)["article_id"].transform("size")
    active = reads >= rules.min_user_articles
    counts["dropped_user_few_articles"] = int((~active).sum())
    pairs = pairs.loc[active]

    pairs["weight"] = (pairs["dwell_seconds"] if has_dwell else pairs["views"]).astype("float32")
    pairs[schemas.DATE] = day
    counts["interactions"] = len(pairs)
    frame = pairs[list(schemas.INTERACTION_COLUMNS)].reset_index(drop=True)
    return frame.astype({"views": "int64", "dwell_seconds": "float64"}), counts


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="object") for name in columns})
