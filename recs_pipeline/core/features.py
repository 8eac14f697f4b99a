"""Features of (reader, candidate article) pairs as of a moment: what news ranking needs.

- every generator's score and rank (which signals offered the article, and how strongly);
- the article's age (first seen, as the sources here have no publish time) and whether it appeared
  after the reader's last visit;
- its popularity at several horizons and the trend between them (momentum: clicks in the last
  hour against the six-hour and day rates);
- the reader's activity and recency (clicks in the lookback and the last day, hours since the last
  click) and session context (clicks in the current session, whether it is still open);
- the hour of the day in the site's time zone (a midnight list and a noon list differ);
- category affinity (the reader's share of clicks in the article's category) when pages have
  categories, missing otherwise.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recs_pipeline.core.candidates import (
    GENERATORS,
    HOUR,
    ArticleStats,
    Candidates,
    ClickHistory,
)

__all__ = ["FEATURES", "SESSION_GAP_HOURS", "candidate_features"]

#: Two clicks further apart than this start a new session.
SESSION_GAP_HOURS = 0.5

FEATURES: tuple[str, ...] = (
    *(f"{name}_score" for name in GENERATORS),
    *(f"{name}_rank" for name in GENERATORS),
    "generators",
    "article_age_hours",
    "new_since_last_visit",
    "pop_now",
    "pop_hour",
    "pop_day",
    "pop_short",
    "clicks_2m",
    "clicks_5m",
    "clicks_10m",
    "clicks_15m",
    "clicks_1h",
    "clicks_6h",
    "clicks_24h",
    "clicks_window",
    "trend_5m_30m",
    "trend_15m_1h",
    "trend_1h_6h",
    "trend_6h_24h",
    "pop_hour_share",
    "pop_now_share",
    "user_clicks",
    "user_clicks_24h",
    "user_hours_since_last",
    "session_clicks",
    "session_open",
    "hour_of_day",
    "category_affinity",
)


def _user_activity(
    history: ClickHistory, end: int, user_codes: np.ndarray, now: float, lookback: float
) -> dict[str, np.ndarray]:
    n_users = len(user_codes)
    out = {
        "user_clicks": np.zeros(n_users),
        "user_clicks_24h": np.zeros(n_users),
        "user_hours_since_last": np.full(n_users, np.nan),
        "session_clicks": np.zeros(n_users),
        "user_last_seconds": np.full(n_users, -np.inf),
    }
    start = history.span(now - lookback * HOUR, now).start
    rows = pd.Index(user_codes).get_indexer(history.user_code[start:end])
    hit = rows >= 0
    rows = rows[hit]
    seconds = history.seconds[start:end][hit]
    if not len(rows):
        return out
    out["user_clicks"] = np.bincount(rows, minlength=n_users).astype(np.float64)
    out["user_clicks_24h"] = np.bincount(
        rows[seconds >= now - 24 * HOUR], minlength=n_users
    ).astype(np.float64)
    last = np.full(n_users, -np.inf)
    np.maximum.at(last, rows, seconds)
    out["user_last_seconds"] = last
    out["user_hours_since_last"] = np.where(np.isfinite(last), (now - last) / HOUR, np.nan)
    # Session: clicks after the last gap longer than SESSION_GAP_HOURS, per user.
    order = np.lexsort((seconds, rows))
    rows, seconds = rows[order], seconds[order]
    new_session = np.ones(len(rows), dtype=bool)
    new_session[1:] = (rows[1:] != rows[:-1]) | (np.diff(seconds) > SESSION_GAP_HOURS * HOUR)
    session_start = np.full(n_users, -np.inf)
    np.maximum.at(session_start, rows[new_session], seconds[new_session])
    in_session = seconds >= session_start[rows]
    out["session_clicks"] = np.bincount(rows[in_session], minlength=n_users).astype(np.float64)
    return out


def _category_affinity(
    history: ClickHistory,
    end: int,
    user_codes: np.ndarray,
    candidates: Candidates,
    categories: pd.Series | None,
) -> np.ndarray:
    """Share of the reader's clicks in the candidate's category; NaN without categories."""
    if categories is None or categories.empty:
        return np.full(len(candidates), np.nan)
    category_of = pd.Series(categories.to_numpy(), index=categories.index.astype(str))
    codes, names = pd.factorize(category_of.reindex(history.articles).to_numpy())
    rows = pd.Index(user_codes).get_indexer(history.user_code[:end])
    hit = rows >= 0
    clicked = codes[history.article_code[:end][hit]]
    rows = rows[hit]
    known = clicked >= 0
    width = max(len(names), 1)
    counts = np.bincount(rows[known] * width + clicked[known], minlength=len(user_codes) * width)
    counts = counts.reshape(len(user_codes), width).astype(np.float64)
    totals = counts.sum(axis=1)
    cand_category = codes[candidates.article_code]
    share = np.where(
        cand_category >= 0,
        counts[candidates.user_row, np.maximum(cand_category, 0)]
        / np.maximum(totals[candidates.user_row], 1.0),
        np.nan,
    )
    return share


def candidate_features(
    history: ClickHistory,
    moment: pd.Timestamp,
    user_codes: np.ndarray,
    candidates: Candidates,
    stats: ArticleStats,
    tz: ZoneInfo,
    lookback_hours: float,
    categories: pd.Series | None = None,
) -> pd.DataFrame:
    """The :data:`FEATURES` columns (float32) of every candidate row, in candidate order."""
    now = stats.moment
    end = history.cut(moment)
    article = candidates.article_code
    row = candidates.user_row
    activity = _user_activity(history, end, user_codes, now, lookback_hours)
    columns: dict[str, np.ndarray] = {}
    for name in GENERATORS:
        columns[f"{name}_score"] = candidates.scores[name]
    for name in GENERATORS:
        columns[f"{name}_rank"] = candidates.ranks[name]
    columns["generators"] = np.sum(
        [~np.isnan(candidates.ranks[name]) for name in GENERATORS], axis=0
    ).astype(np.float64)
    age = stats.age_hours[article]
    columns["article_age_hours"] = np.where(np.isfinite(age), age, np.nan)
    first_seen = now - age * HOUR
    columns["new_since_last_visit"] = (first_seen > activity["user_last_seconds"][row]).astype(
        np.float64
    )
    top_hour = max(float(stats.pop_hour.max(initial=0.0)), 1e-12)
    top_now = max(float(stats.pop_now.max(initial=0.0)), 1e-12)
    columns["pop_now"] = stats.pop_now[article]
    columns["pop_now_share"] = stats.pop_now[article] / top_now
    columns["clicks_2m"] = stats.clicks_2m[article]
    columns["clicks_5m"] = stats.clicks_5m[article]
    columns["clicks_10m"] = stats.clicks_10m[article]
    columns["trend_5m_30m"] = (stats.clicks_5m[article] + 1) / (
        (stats.clicks_1h[article] + stats.clicks_15m[article]) / 12 + 1
    )
    columns["pop_hour"] = stats.pop_hour[article]
    columns["pop_day"] = stats.pop_day[article]
    columns["pop_short"] = stats.pop_short[article]
    columns["clicks_15m"] = stats.clicks_15m[article]
    columns["trend_15m_1h"] = (stats.clicks_15m[article] + 1) / (stats.clicks_1h[article] / 4 + 1)
    columns["clicks_1h"] = stats.clicks_1h[article]
    columns["clicks_6h"] = stats.clicks_6h[article]
    columns["clicks_24h"] = stats.clicks_24h[article]
    columns["clicks_window"] = stats.clicks_window[article]
    columns["trend_1h_6h"] = (stats.clicks_1h[article] + 1) / (stats.clicks_6h[article] / 6 + 1)
    columns["trend_6h_24h"] = (stats.clicks_6h[article] + 1) / (stats.clicks_24h[article] / 4 + 1)
    columns["pop_hour_share"] = stats.pop_hour[article] / top_hour
    for name in ("user_clicks", "user_clicks_24h", "user_hours_since_last", "session_clicks"):
        columns[name] = activity[name][row]
    columns["session_open"] = (activity["user_hours_since_last"][row] <= SESSION_GAP_HOURS).astype(
        np.float64
    )
    local = pd.Timestamp(now, unit="s", tz="UTC").tz_convert(tz)
    columns["hour_of_day"] = np.full(len(row), local.hour + local.minute / 60.0)
    columns["category_affinity"] = _category_affinity(
        history, end, user_codes, candidates, categories
    )
    frame = pd.DataFrame({name: columns[name] for name in FEATURES})
    return frame.astype(np.float32)
