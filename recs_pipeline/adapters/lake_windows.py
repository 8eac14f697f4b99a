"""Trailing windows over the lake's day partitions, each partition read once per range run.

The ranker, the evaluation and the recommendations read the same kinds of windows (page views
of the last days, the read set, article sections); a range run asks for consecutive days and
every partition is read once and let go when no later window covers it.
"""

from __future__ import annotations

import functools
from typing import Final

import pandas as pd

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.day_frames import DayFrames, TrailingWindow, stack
from recs_pipeline.core.site import SiteConfig

__all__ = [
    "CLICK_COLUMNS",
    "OPENED_COLUMNS",
    "SectionWindow",
    "article_sections",
    "click_window",
    "opened_window",
    "page_views",
    "readers_since",
]

CLICK_COLUMNS = ("user_id", "article_id", "ts")


def page_views(events: pd.DataFrame) -> pd.DataFrame:
    """The clicks the ranker and the evaluation read: article page views (user, article, time)."""
    if events.empty or "ts" not in events.columns:
        return pd.DataFrame(
            {"user_id": [], "article_id": [], "ts": pd.Series(dtype="datetime64[ms, UTC]")}
        )
    views = events.loc[events["event_name"] == "page_view"] if "event_name" in events else events
    views = views.loc[views["article_id"].notna(), ["user_id", "article_id", "ts"]]
    return views.astype({"user_id": str, "article_id": str})


SECTION_COLUMNS: Final = ("article_id", "section")


def article_sections(lake: Lake, site: SiteConfig, days: list[str]) -> pd.Series | None:
    """Article -> section from the ``pages`` of some days (None when pages have no sections)."""
    frames = [_day_sections(lake, site.name, day) for day in sorted(days)]
    return _sections(stack(frames, SECTION_COLUMNS))


class SectionWindow:
    """Article -> section over the ``days`` pages partitions ending with a day.

    Asked for consecutive days (a range run), each pages partition is read once and kept only
    while a later window still covers it, where ``article_sections`` per day would re-read the
    whole window every day.
    """

    def __init__(self, lake: Lake, site: SiteConfig, days: int) -> None:
        pages = DayFrames(
            {
                day: functools.partial(_day_sections, lake, site.name, day)
                for day in lake.days(site.name, names.PAGES)
            },
            columns=SECTION_COLUMNS,
        )
        self._window = TrailingWindow(pages, days)

    def sections(self, day: str) -> pd.Series | None:
        return _sections(self._window.rows(day))


def _day_sections(lake: Lake, site: str, day: str) -> pd.DataFrame:
    """A day's pages reduced to the articles that have a section."""
    pages = lake.read_partition(site, names.PAGES, day)
    if pages is None or "section" not in pages.columns:
        return pd.DataFrame(columns=list(SECTION_COLUMNS))
    return pages.loc[pages["section"].notna(), list(SECTION_COLUMNS)]


def _sections(known: pd.DataFrame) -> pd.Series | None:
    if known.empty:
        return None
    return known.drop_duplicates("article_id", keep="last").set_index("article_id")["section"]


def click_window(raw_events: DayFrames, days: int) -> TrailingWindow:
    """Page views of the ``days`` days ending with a day, read one partition at a time.

    Each day's raw events (page pings included) are reduced to its page views as they are read,
    and a day's views are kept only while a later window still covers it: a range run holds one
    window of clicks, not every raw event of the range.
    """
    return TrailingWindow(raw_events.map(page_views, CLICK_COLUMNS), days)


OPENED_COLUMNS = ("user_id", "article_id", "date")


def opened_window(engagement: DayFrames, days: int) -> TrailingWindow:
    """(reader, article, day) of the pairs opened in the ``days`` days ending with a day, one
    partition read at a time and reduced to its distinct pairs as it is read (the day is a
    categorical: one value per partition)."""
    return TrailingWindow(engagement.map(_distinct_pairs, OPENED_COLUMNS), days)


def _distinct_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=list(OPENED_COLUMNS))
    pairs = rows[["user_id", "article_id", "date"]].drop_duplicates(["user_id", "article_id"])
    return pairs.astype({"date": "category"}).reset_index(drop=True)


def readers_since(pairs: pd.DataFrame, first_day: str) -> pd.Index:
    """Readers with a pair opened on ``first_day`` or later (the engagement window's readers,
    who get a published list; the read set reaches further back)."""
    if pairs.empty:
        return pd.Index([], dtype=object)
    recent = pairs.loc[pairs["date"].astype(str) >= first_day, "user_id"]
    return pd.Index(pd.unique(recent.astype(str).to_numpy()), dtype=object)
