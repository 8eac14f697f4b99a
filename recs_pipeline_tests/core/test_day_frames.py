"""DayFrames and TrailingWindow: days produced one at a time, windows reading each day once."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from recs_pipeline.core.day_frames import DayFrames, TrailingWindow, stack

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]


def day_rows(day: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"date": [day] * n, "user_id": [f"u{i}" for i in range(n)], "x": range(n)})


class Counted:
    """Loaders that count how often each day was produced."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.calls: list[str] = []

    def loader(self, day: str) -> Callable[[], pd.DataFrame]:
        def load() -> pd.DataFrame:
            self.calls.append(day)
            return day_rows(day, self.sizes[day])

        return load

    def frames(self) -> DayFrames:
        return DayFrames({day: self.loader(day) for day in self.sizes}, columns=["date", "x"])


def test_days_are_produced_in_order_only_when_asked_for() -> None:
    counted = Counted({DAYS[2]: 1, DAYS[0]: 2, DAYS[1]: 0})
    frames = counted.frames()
    assert frames.days == DAYS[:3] and len(frames) == 3 and DAYS[1] in frames
    assert counted.calls == []
    stream = iter(frames)
    day, first = next(stream)
    assert (day, len(first)) == (DAYS[0], 2)
    assert counted.calls == [DAYS[0]]
    assert [(day, len(frame)) for day, frame in stream] == [(DAYS[1], 0), (DAYS[2], 1)]
    assert counted.calls == DAYS[:3]


def test_concat_is_what_reading_the_partitions_together_gives() -> None:
    counted = Counted({DAYS[0]: 2, DAYS[1]: 0, DAYS[2]: 3})
    together = counted.frames().concat()
    assert together["date"].tolist() == [DAYS[0]] * 2 + [DAYS[2]] * 3
    assert together.index.tolist() == list(range(5))
    # No rows anywhere: the first day's empty frame keeps its columns; no day at all: `columns`.
    assert list(Counted({DAYS[0]: 0, DAYS[1]: 0}).frames().concat().columns) == [
        "date",
        "user_id",
        "x",
    ]
    assert list(DayFrames({}, columns=["date", "x"]).concat().columns) == ["date", "x"]
    assert stack([]).columns.tolist() == ["date"]


def test_load_select_and_of_frame() -> None:
    counted = Counted({DAYS[0]: 2, DAYS[1]: 1})
    frames = counted.frames()
    assert len(frames.load(DAYS[1])) == 1
    missing = frames.load(DAYS[4])
    assert missing.empty and list(missing.columns) == ["date", "x"]
    assert frames.select([DAYS[1], DAYS[3]]).days == [DAYS[1]]
    assert frames.summary() == {}

    whole = pd.concat([day_rows(DAYS[0], 2), day_rows(DAYS[2], 1)], ignore_index=True)
    split = DayFrames.of_frame(whole, days=DAYS[:3])
    assert [(day, len(frame)) for day, frame in split] == [(DAYS[0], 2), (DAYS[1], 0), (DAYS[2], 1)]
    assert list(split.load(DAYS[1]).columns) == ["date", "user_id", "x"]
    assert DayFrames.of_frame(whole).days == [DAYS[0], DAYS[2]]


def test_summary_reports_what_the_producer_learnt() -> None:
    seen: list[int] = []

    def load() -> pd.DataFrame:
        frame = day_rows(DAYS[0], 4)
        seen.append(len(frame))
        return frame

    frames = DayFrames({DAYS[0]: load}, summary=lambda: {"rows": sum(seen)})
    assert frames.summary() == {"rows": 0}
    list(frames)
    assert frames.summary() == {"rows": 4}


def test_trailing_windows_read_each_partition_once_and_match_filtering() -> None:
    sizes = {DAYS[0]: 2, DAYS[1]: 0, DAYS[2]: 3, DAYS[3]: 1, DAYS[4]: 2}
    counted = Counted(sizes)
    windows = TrailingWindow(counted.frames(), days=3)
    whole = counted.frames().concat()
    counted.calls.clear()
    for i, day in enumerate(DAYS):
        covered = DAYS[max(0, i - 2) : i + 1]
        expected = whole.loc[whole["date"].isin(covered)].reset_index(drop=True)
        pd.testing.assert_frame_equal(windows.rows(day), expected)
    assert counted.calls == DAYS  # every partition read once, in order
    # Only the window's days stay loaded.
    assert sorted(windows._loaded) == DAYS[2:]


def test_a_window_before_any_partition_is_empty_with_columns() -> None:
    windows = TrailingWindow(Counted({DAYS[4]: 2}).frames(), days=2)
    early = windows.rows(DAYS[1])
    assert early.empty and list(early.columns) == ["date", "x"]
    with pytest.raises(ValueError):
        TrailingWindow(DayFrames({}), days=0)


def test_map_transforms_each_day_when_it_is_produced() -> None:
    counted = Counted({DAYS[0]: 2, DAYS[1]: 3})
    doubled = counted.frames().map(lambda frame: frame.assign(x=frame["x"] * 2), ["date", "x"])
    assert counted.calls == []  # nothing read until a day is asked for
    assert doubled.days == DAYS[:2]
    original = counted.frames().load(DAYS[1])
    counted.calls.clear()
    assert doubled.load(DAYS[1])["x"].tolist() == (original["x"] * 2).tolist()
    assert counted.calls == [DAYS[1]]
    # A day it does not have is empty with the mapped columns.
    assert list(doubled.load(DAYS[4]).columns) == ["date", "x"]
