"""Day partitions handed over one day at a time, so a run over a range holds about one day.

A single-run backfill covers many days, but every stage of ingestion works day by day: a
``DayFrames`` names the days and produces each day's frame only when it is asked for. Stages read
their inputs through it (the lake IO manager loads a partition when its day comes up) and can
return one (the IO manager writes each day's frame as it is produced). ``TrailingWindow`` serves
the windows of stages that look back over several days, keeping a partition loaded only while a
later window still needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from recs_pipeline.core.schemas import DATE
from recs_pipeline.core.timeframe import window_days

DayLoader = Callable[[], pd.DataFrame]


class DayFrames:
    """Day keys (``YYYY-MM-DD``) in order, each with a function that produces that day's frame.

    Iterating yields ``(day, frame)`` oldest first, producing one frame at a time: a consumer that
    lets go of each frame before asking for the next holds one day. Nothing is cached, so asking
    for a day twice produces it twice (reads the partition again). ``summary``, when given, says
    what the producer learnt once every day has been produced (for a stage's metadata).
    """

    def __init__(
        self,
        loaders: Mapping[str, DayLoader],
        *,
        columns: Sequence[str] = (DATE,),
        summary: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._loaders = dict(sorted(loaders.items()))
        self.columns = tuple(columns)
        self._summary = summary

    @classmethod
    def of_days(
        cls, frames: Mapping[str, pd.DataFrame], columns: Sequence[str] = (DATE,)
    ) -> DayFrames:
        """Frames already in memory, one per day."""
        return cls({day: _constant(frame) for day, frame in frames.items()}, columns=columns)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, days: Sequence[str] | None = None) -> DayFrames:
        """The days of an in-memory frame with a ``date`` column (``days``: these, even empty)."""
        if DATE in frame.columns:
            keys = frame[DATE].astype(str)
            groups = {str(day): rows for day, rows in frame.groupby(keys, sort=True)}
        else:
            groups = {}
        wanted = sorted(groups) if days is None else sorted(days)
        empty = frame.iloc[0:0]
        return cls(
            {day: _constant(groups.get(day, empty)) for day in wanted},
            columns=[str(name) for name in frame.columns] or [DATE],
        )

    @property
    def days(self) -> list[str]:
        return list(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __contains__(self, day: object) -> bool:
        return day in self._loaders

    def __iter__(self) -> Iterator[tuple[str, pd.DataFrame]]:
        for day, load in self._loaders.items():
            yield day, load()

    def __repr__(self) -> str:
        days = self.days
        span = f"{days[0]}..{days[-1]}" if days else "no days"
        return f"DayFrames({len(days)} days, {span})"

    def load(self, day: str) -> pd.DataFrame:
        """One day's frame; an empty frame (with ``columns``) for a day it does not have."""
        load = self._loaders.get(day)
        return load() if load is not None else pd.DataFrame(columns=list(self.columns))

    def select(self, days: Sequence[str]) -> DayFrames:
        """The same frames for only those of ``days`` it has."""
        wanted = set(days)
        return DayFrames(
            {day: load for day, load in self._loaders.items() if day in wanted},
            columns=self.columns,
        )

    def map(
        self, transform: Callable[[pd.DataFrame], pd.DataFrame], columns: Sequence[str]
    ) -> DayFrames:
        """The same days, each frame passed through ``transform`` when it is produced (a
        reduction applied as a partition is read, so only the reduced frame is kept)."""
        return DayFrames(
            {day: _then(load, transform) for day, load in self._loaders.items()}, columns=columns
        )

    def concat(self) -> pd.DataFrame:
        """Every day in one frame, for a consumer that needs them together.

        Days without rows add nothing; when no day has rows, the first day's empty frame keeps
        the columns, and without any day the frame has ``columns`` only.
        """
        return stack([frame for _, frame in self], self.columns)

    def summary(self) -> dict[str, Any]:
        """What the producer reports once its days are produced (empty without a summary)."""
        return dict(self._summary()) if self._summary is not None else {}


class TrailingWindow:
    """The rows of the ``days`` day partitions ending with a day, read from a ``DayFrames``.

    Asked for days in order, every partition is read once: a partition stays loaded while the
    window still covers it and is let go when the window moves past it. Memory is one window's
    partitions plus the frame handed out, not the whole range a run's windows span.
    """

    def __init__(self, frames: DayFrames, days: int) -> None:
        if days < 1:
            raise ValueError("a trailing window covers at least one day")
        self.frames = frames
        self.days = days
        self._loaded: dict[str, pd.DataFrame] = {}

    def rows(self, day: str) -> pd.DataFrame:
        """The window's rows, oldest day first (an empty frame when it has none)."""
        wanted = [key for key in window_days(day, self.days) if key in self.frames]
        for gone in [key for key in self._loaded if key not in wanted]:
            del self._loaded[gone]
        for key in wanted:
            if key not in self._loaded:
                self._loaded[key] = self.frames.load(key)
        return stack([self._loaded[key] for key in wanted], self.frames.columns)


def stack(frames: Sequence[pd.DataFrame], columns: Sequence[str] = (DATE,)) -> pd.DataFrame:
    """Day frames as one, like the lake reads several partitions.

    Frames without rows add nothing; when none has rows the first keeps the columns, and without
    any frame the result has ``columns`` only. A single frame with rows is returned as it is.
    """
    non_empty = [frame for frame in frames if not frame.empty]
    if len(non_empty) == 1:
        return non_empty[0]
    if non_empty:
        return pd.concat(non_empty, ignore_index=True)
    return frames[0] if frames else pd.DataFrame(columns=list(columns))


def _then(load: DayLoader, transform: Callable[[pd.DataFrame], pd.DataFrame]) -> DayLoader:
    return lambda: transform(load())


def _constant(frame: pd.DataFrame) -> DayLoader:
    return lambda: frame


def of_days(frame: pd.DataFrame, days: Iterable[str]) -> pd.DataFrame:
    """The rows of some day partitions (an input may be empty, even without columns)."""
    if frame.empty or DATE not in frame.columns:
        return frame.iloc[0:0]
    return frame.loc[frame[DATE].isin(list(days))]
