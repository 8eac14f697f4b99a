"""What user_recommendations excludes: the pairs opened in the window, read a day at a time."""

import pandas as pd

from recs_pipeline.adapters.lake_windows import opened_window
from recs_pipeline.assets.serving import read_articles_recommended
from recs_pipeline.core.day_frames import DayFrames

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def engagement_day(day: str) -> pd.DataFrame:
    index = DAYS.index(day)
    # The same pair twice a day (two visits), and one article per day of its own.
    return pd.DataFrame(
        {
            "date": day,
            "user_id": ["u1", "u1", "u2"],
            "article_id": ["shared", "shared", f"a{index}"],
            "dwell_seconds": [10.0, 30.0, 5.0],
        }
    )


def test_window_holds_distinct_pairs_and_reads_each_partition_once() -> None:
    loads: list[str] = []

    def loader(day: str) -> pd.DataFrame:
        loads.append(day)
        return engagement_day(day)

    engagement = DayFrames({day: (lambda day=day: loader(day)) for day in DAYS})
    window = opened_window(engagement, 2)

    first = window.rows("2026-11-02")
    assert sorted(first.columns) == ["article_id", "date", "user_id"]
    assert set(map(tuple, first[["user_id", "article_id"]].to_numpy())) == {
        ("u1", "shared"),
        ("u2", "a0"),
        ("u2", "a1"),
    }
    # Each day is reduced to distinct pairs as it is read: "shared" once per day, not per visit.
    assert len(first) == 4

    from recs_pipeline.adapters.lake_windows import readers_since

    assert list(readers_since(first, "2026-11-02")) == ["u1", "u2"]
    assert list(readers_since(first.loc[first["user_id"] == "u2"], "2026-11-03")) == []
    last = window.rows("2026-11-03")
    assert set(last["article_id"]) == {"shared", "a1", "a2"}
    window.rows("2026-11-04")
    assert loads == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def test_recommendations_of_opened_articles_are_counted() -> None:
    seen = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "article_id": ["a", "a", "b"]})
    recs = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2"], "article_id": ["a", "c", "a", "b"], "rank": 1}
    )
    assert read_articles_recommended(recs, seen) == 2
    assert read_articles_recommended(recs.iloc[[1, 2]], seen) == 0
    assert read_articles_recommended(recs.iloc[0:0], seen) == 0
