"""Days in a site's time zone and the "as of" moment every downstream stage is computed at.

A day partition ``D`` covers ``[D 00:00, D+1 00:00)`` in the site's time zone. Everything after
the events is computed as of a moment: by default the end of the partition day (or now, while the
day is still running); an explicit moment rebuilds any past state. No stage may read an event at
or after its as-of moment.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd


def day_bounds(day: dt.date | str, tz: ZoneInfo) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC start (inclusive) and end (exclusive) of a day in a time zone (DST-safe)."""
    date = dt.date.fromisoformat(day) if isinstance(day, str) else day
    start = dt.datetime.combine(date, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")


def day_of(moment: pd.Timestamp, tz: ZoneInfo) -> dt.date:
    """The day, in the site's time zone, that contains a moment."""
    return pd.Timestamp(moment).tz_convert(tz).date()


def parse_moment(text: str) -> pd.Timestamp:
    """An ISO timestamp; one without an offset is read as UTC."""
    moment = pd.Timestamp(text)
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    return moment.tz_convert("UTC")


def as_of_for_day(
    day: dt.date | str,
    tz: ZoneInfo,
    explicit: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
) -> pd.Timestamp:
    """The moment a day partition is computed as of.

    An explicit moment must fall inside the day (``start < as_of <= end``): it selects a state of
    that day, it cannot move a partition to another day.
    """
    start, end = day_bounds(day, tz)
    if explicit is not None:
        explicit = pd.Timestamp(explicit).tz_convert("UTC")
        if not start < explicit <= end:
            raise ValueError(
                f"as_of {explicit.isoformat()} is outside partition {day} "
                f"({start.isoformat()} .. {end.isoformat()}); pick the partition of that day"
            )
        return explicit
    current = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    return min(end, current.floor("s"))


def window_days(day: dt.date | str, days: int) -> list[str]:
    """The ``days`` day keys ending with ``day`` (inclusive), oldest first."""
    date = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return [(date - dt.timedelta(days=offset)).isoformat() for offset in range(days - 1, -1, -1)]


def previous_day(day: str) -> str:
    """The day key before ``day``."""
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
