"""Engagement, pages and trailing-window interactions (no Dagster)."""

from __future__ import annotations

import pandas as pd
import pytest

from recs_pipeline.core.engagement import daily_engagement, daily_pages, window_interactions
from recs_pipeline.core.site import EngagementConfig

T0 = pd.Timestamp("2026-11-10 12:00", tz="UTC")


def events(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """(user, article, event_name, seconds after T0)."""
    frame = pd.DataFrame(rows, columns=["user_id", "article_id", "event_name", "offset"])
    frame["ts"] = T0 + pd.to_timedelta(frame.pop("offset"), unit="s")
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame["path"] = "/a/" + frame["article_id"]
    return frame


def test_dwell_is_pings_times_heartbeat_and_ignores_events_after_as_of() -> None:
    day = events(
        [("u", "a", "page_view", 0)]
        + [("u", "a", "page_ping", 10 * i) for i in range(1, 7)]
        + [("v", "a", "page_view", 100)]
    )
    engagement = daily_engagement(day, "2026-11-10", T0 + pd.Timedelta(seconds=45), 10)
    row = engagement.set_index("user_id").loc["u"]
    assert row["views"] == 1 and row["pings"] == 4 and row["dwell_seconds"] == 40.0
    assert "v" not in set(engagement["user_id"])  # its view is after as_of
    assert (engagement["last_ts"] < T0 + pd.Timedelta(seconds=45)).all()


def test_pages_pick_the_most_frequent_path_and_count_readers() -> None:
    day = events(
        [("u", "a", "page_view", 0), ("v", "a", "page_view", 5), ("u", "b", "page_view", 9)]
    )
    day.loc[1, "path"] = "/a/a?utm=x"
    pages = daily_pages(day, "2026-11-10").set_index("article_id")
    assert pages.loc["a", "readers"] == 2 and pages.loc["a", "views"] == 2
    assert pages.loc["a", "path"] == "/a/a"
    assert pages.loc["b", "first_seen"] == T0 + pd.Timedelta(seconds=9)


def engagement_rows(rows: list[tuple[str, str, float]], day: str = "2026-11-10") -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "article_id", "dwell_seconds"])
    frame["date"] = day
    frame["views"] = 1
    frame["pings"] = (frame["dwell_seconds"] // 10).astype(int)
    frame["first_ts"] = T0
    frame["last_ts"] = T0 + pd.Timedelta(minutes=5)
    return frame


def test_window_thresholds_follow_the_site_rules() -> None:
    rules = EngagementConfig(
        min_dwell_seconds=30,
        max_dwell_seconds=600,
        min_user_dwell_seconds=60,
        min_article_readers=2,
        min_user_articles=2,
    )
    rows = engagement_rows(
        [
            ("u1", "a", 40),
            ("u1", "b", 50),  # kept
            ("u2", "a", 45),
            ("u2", "b", 35),  # kept
            ("u3", "a", 10),
            ("u3", "b", 900),  # both out of the dwell range
            ("u4", "a", 31),
            ("u4", "c", 31),  # c has one reader -> dropped, then u4 has 1 article
        ]
    )
    frame, counts = window_interactions(rows, "2026-11-10", T0 + pd.Timedelta(days=1), rules, True)
    assert sorted(zip(frame["user_id"], frame["article_id"], strict=True)) == [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "b"),
    ]
    assert counts["dropped_dwell_out_of_range"] == 2
    assert frame["weight"].tolist() == frame["dwell_seconds"].astype("float32").tolist()


def test_click_only_sources_weigh_views_and_skip_dwell_rules() -> None:
    rules = EngagementConfig(min_article_readers=1, min_user_articles=1)
    rows = engagement_rows([("u1", "a", 0), ("u1", "a", 0)])
    rows.loc[1, "date"] = "2026-11-09"
    frame, _ = window_interactions(rows, "2026-11-10", T0 + pd.Timedelta(days=1), rules, False)
    assert frame["weight"].tolist() == [2.0]


def test_engagement_from_after_as_of_is_refused() -> None:
    rows = engagement_rows([("u1", "a", 40)])
    with pytest.raises(ValueError, match="at or after as_of"):
        window_interactions(rows, "2026-11-10", T0, EngagementConfig(), True)
