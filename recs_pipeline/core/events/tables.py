"""Rows of tables (delimited files, GA4 Parquet, MIND): validated column-wise."""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recs_pipeline.core.events.common import (
    _RAW_COLUMNS,
    CHECKED_FIELDS,
    CONTROL_CHARACTERS,
    MAX_FIELD_CHARS,
    ParsedLines,
    Pseudonymiser,
    _finish,
    _rows_as_text,
    compact,
    quarantine_frame,
    string_series,
)


def parse_timestamps(
    raw: pd.Series, unit: str, timezone: str = "UTC", fmt: str | None = None
) -> pd.Series:
    """UTC timestamps from text: numbers in ``unit`` (s, ms, us, ns), ISO 8601, or ``fmt``.

    Text without an offset is local time in ``timezone`` (a time that does not exist or is
    ambiguous at a clock change becomes NaT and is quarantined, never guessed).
    """
    raw = raw.astype("string").str.strip()
    if fmt is not None or unit == "iso":
        stamps = pd.to_datetime(raw, format=fmt or "ISO8601", errors="coerce")
        if getattr(stamps.dt, "tz", None) is None:
            stamps = stamps.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        return stamps.dt.tz_convert("UTC")
    numbers = pd.to_numeric(raw, errors="coerce")
    limit = {"s": 9e9, "ms": 9e12, "us": 9e15, "ns": 9e18}[unit]
    numbers = numbers.where(numbers.abs() < limit)  # beyond year 2255: not a timestamp
    return pd.to_datetime(numbers, unit=cast(Literal["s", "ms", "us", "ns"], unit), utc=True)


def events_from_table(
    table: pd.DataFrame,
    source_file: str,
    timestamp_unit: str,
    timestamp_timezone: str = "UTC",
    line_offset: int = 2,
    users: Pseudonymiser | None = None,
    timestamp_format: str | None = None,
    bot_user_agent_pattern: str | None = None,
    line_numbers: np.ndarray | None = None,
) -> ParsedLines:
    """Validate rows of a table already renamed to the canonical column names.

    ``table`` holds string columns ``user_id``, ``ts`` and optionally ``article_id``, ``path``,
    ``event_id``, ``event_name``, ``referrer``, ``user_agent``, ``engaged_ms``. Rows without an
    event name are clicks (``page_view``); rows without an event id get a deterministic one from
    (user, article or path, timestamp), so re-delivered rows de-duplicate.
    """
    # Positional: a table whose rows were filtered (GA4 rows without ignored kinds) keeps its
    # index, and the columns below are aligned on a fresh one.
    table = table.reset_index(drop=True)
    n = len(table)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    for name in (
        "user_id",
        "article_id",
        "path",
        "event_id",
        "event_name",
        "referrer",
        "user_agent",
    ):
        if name in table:
            values = table[name].astype("string").str.strip()
            frame[name] = values.mask(values == "")
        else:
            frame[name] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["line_no"] = (
        np.arange(line_offset, line_offset + n, dtype="int64")
        if line_numbers is None
        else np.asarray(line_numbers, dtype="int64")
    )
    raw_ts = table["ts"].astype("string")
    frame["ts"] = parse_timestamps(raw_ts, timestamp_unit, timestamp_timezone, timestamp_format)
    engaged = (
        pd.to_numeric(table["engaged_ms"], errors="coerce")
        if "engaged_ms" in table
        else pd.Series(0, index=frame.index)
    )

    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    has_target = frame["article_id"].notna() | frame["path"].notna()
    missing = frame["user_id"].isna() | ~has_target | raw_ts.isna() | (raw_ts.str.strip() == "")
    reasons = reasons.mask(missing.fillna(True), "missing_field")
    reasons = reasons.mask(reasons.isna() & frame["ts"].isna(), "bad_timestamp")
    reasons = reasons.mask(reasons.isna() & (engaged.isna() | (engaged < 0)), "wrong_type")
    too_long = pd.Series(False, index=frame.index)
    for name in ("user_id", "article_id", "path", "event_id", "referrer", "event_name"):
        too_long |= (frame[name].str.len() > MAX_FIELD_CHARS).fillna(False)
    reasons = reasons.mask(reasons.isna() & too_long, "oversized")
    control = pd.Series(False, index=frame.index)
    for name in CHECKED_FIELDS:
        control |= frame[name].str.contains(CONTROL_CHARACTERS, regex=True).fillna(False)
    reasons = reasons.mask(reasons.isna() & control, "control_character")

    rejected = reasons.notna().to_numpy()
    raw = _rows_as_text(table.loc[rejected])
    rows = [
        (str(r), source_file, int(no), text)
        for r, no, text in zip(
            reasons[rejected].tolist(), frame.loc[rejected, "line_no"].tolist(), raw, strict=True
        )
    ]
    good = frame.loc[~rejected].copy()
    good["engaged_ms"] = engaged[~rejected].astype("int64")
    good["event_name"] = good["event_name"].fillna("page_view")
    good["ts"] = good["ts"].astype("datetime64[ms, UTC]")
    if bot_user_agent_pattern and len(good):
        agents = good["user_agent"]
        bots = agents.str.contains(bot_user_agent_pattern, case=False, regex=True).fillna(False)
        good["user_agent"] = agents.where(bots)
    if users is not None and len(good):
        good["user_id"] = users.apply(good["user_id"])
    target = good["article_id"].fillna(good["path"])
    # Milliseconds as text, by Arrow (the same digits as str(int), without a Python object each).
    millis = pd.Series(
        string_series(pc.cast(pa.array(good["ts"].array.asi8), pa.string())).array,
        index=good.index,
    )
    good["event_id"] = good["event_id"].fillna(good["user_id"] + "|" + target + "|" + millis)
    parsed = ParsedLines(
        source_file,
        compact(good.reset_index(drop=True)[[*_RAW_COLUMNS, "article_id", "line_no"]]),
        quarantine_frame(rows),
        n,
    )
    return _finish(parsed, users)
