"""Rows of tables (delimited files, GA4 Parquet, MIND): validated column-wise."""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recs_pipeline.core.events.common import (
    CHECKED_FIELDS,
    CONTROL_CHARACTERS,
    MAX_FIELD_CHARS,
    ParsedLines,
    Pseudonymiser,
    QuarantineRow,
    _finish,
    _rows_as_text,
    arrow_categorical,
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
    numbers = _integers(raw)
    if numbers is None:
        numbers = pd.to_numeric(raw, errors="coerce")
    limit = {"s": 9e9, "ms": 9e12, "us": 9e15, "ns": 9e18}[unit]
    numbers = numbers.where(numbers.abs() < limit)  # beyond year 2255: not a timestamp
    return pd.to_datetime(numbers, unit=cast(Literal["s", "ms", "us", "ns"], unit), utc=True)


def _integers(text: pd.Series) -> pd.Series | None:
    """``pd.to_numeric`` of a column that holds only decimal integers, by Arrow's cast (None
    when a value is missing or not a plain integer: ``pd.to_numeric`` then decides)."""
    values = pa.array(text.array)
    if values.null_count or not len(values):
        return None
    if not pc.all(pc.match_substring_regex(values, r"^-?[0-9]+$")).as_py():
        return None  # Arrow's cast also takes "0x10" and "+7"
    try:
        numbers = pc.cast(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # Nullable, as pd.to_numeric gives for a string column (out-of-range values become NA).
    return pd.Series(
        pd.array(numbers.to_numpy(zero_copy_only=False), dtype="Int64"), index=text.index
    )


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

    Column-wise in Arrow (each check one kernel over a column, masks as numpy booleans): a
    pandas operation per check and batch cost more than the check itself.
    """
    # Positional: a table whose rows were filtered (GA4 rows without ignored kinds) keeps its
    # index; everything below is by position.
    table = table.reset_index(drop=True)
    n = len(table)
    columns: dict[str, pa.Array] = {}
    for name in (
        "user_id",
        "article_id",
        "path",
        "event_id",
        "event_name",
        "referrer",
        "user_agent",
    ):
        columns[name] = _stripped(table[name]) if name in table else pa.nulls(n, pa.string())
    line_no = (
        np.arange(line_offset, line_offset + n, dtype="int64")
        if line_numbers is None
        else np.asarray(line_numbers, dtype="int64")
    )
    raw_ts = table["ts"].astype("string")
    stamps = parse_timestamps(raw_ts, timestamp_unit, timestamp_timezone, timestamp_format)
    engaged = (
        pd.to_numeric(table["engaged_ms"], errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
        if "engaged_ms" in table
        else np.zeros(n)
    )

    def null(values: pa.Array) -> np.ndarray:
        return np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)

    def true(mask: pa.Array) -> np.ndarray:  # missing counts as False
        return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)

    # The first reason that applies, in this order (0: none).
    reasons = ("", "missing_field", "bad_timestamp", "wrong_type", "oversized", "control_character")
    ts_text = _stripped(raw_ts)  # "" became missing
    missing = (
        null(columns["user_id"])
        | (null(columns["article_id"]) & null(columns["path"]))
        | null(ts_text)
    )
    reason = np.where(missing, 1, 0).astype(np.int8)
    reason[(reason == 0) & stamps.isna().to_numpy()] = 2
    reason[(reason == 0) & (np.isnan(engaged) | (engaged < 0))] = 3
    too_long = np.zeros(n, dtype=bool)
    for name in ("user_id", "article_id", "path", "event_id", "referrer", "event_name"):
        too_long |= true(pc.greater(pc.utf8_length(columns[name]), MAX_FIELD_CHARS))
    reason[(reason == 0) & too_long] = 4
    control = np.zeros(n, dtype=bool)
    for name in CHECKED_FIELDS:
        control |= true(pc.match_substring_regex(columns[name], CONTROL_CHARACTERS))
    reason[(reason == 0) & control] = 5

    rejected = reason > 0
    rows: list[QuarantineRow] = []
    if rejected.any():
        raw = _rows_as_text(table.loc[rejected])
        rows = [
            (reasons[r], source_file, int(no), text)
            for r, no, text in zip(
                reason[rejected].tolist(), line_no[rejected].tolist(), raw, strict=True
            )
        ]
        keep = pa.array(~rejected)
        columns = {name: pc.filter(values, keep) for name, values in columns.items()}
    good = ~rejected
    kept = int(good.sum())
    ts = stamps[good].astype("datetime64[ms, UTC]").reset_index(drop=True)
    event_name = pc.fill_null(columns["event_name"], "page_view")
    agents = columns["user_agent"]
    if bot_user_agent_pattern and kept:
        # pandas' contains: Arrow's engine, or Python's for what RE2 does not support.
        bots = string_series(agents).str.contains(bot_user_agent_pattern, case=False, regex=True)
        agents = pc.if_else(pa.array(bots.fillna(False).to_numpy(dtype=bool)), agents, None)
    user = columns["user_id"]
    if users is not None and kept:
        user = _strings(users.apply(string_series(user)))
    target = pc.coalesce(columns["article_id"], columns["path"])
    # Milliseconds as text, by Arrow (the same digits as str(int)).
    millis = pc.cast(pa.array(ts.to_numpy(dtype="datetime64[ms]").view("int64")), pa.string())
    derived = pc.binary_join_element_wise(user, target, millis, "|")
    frame = pd.DataFrame(
        {
            "event_id": string_series(pc.coalesce(columns["event_id"], derived)),
            "ts": ts,
            "user_id": arrow_categorical(user),
            "event_name": arrow_categorical(event_name),
            "path": arrow_categorical(columns["path"]),
            "referrer": arrow_categorical(columns["referrer"]),
            "user_agent": arrow_categorical(agents),
            "engaged_ms": engaged[good].astype("int64"),
            "article_id": arrow_categorical(columns["article_id"]),
            "line_no": line_no[good],
        }
    )
    parsed = ParsedLines(source_file, frame, quarantine_frame(rows), n)
    return _finish(parsed, users)


def _stripped(column: pd.Series) -> pa.Array:
    """A column as Arrow strings without surrounding whitespace, empty ones missing (what
    ``.str.strip()`` and ``.mask(values == "")`` give)."""
    values = pc.utf8_trim_whitespace(_strings(column))
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _strings(column: pd.Series) -> pa.Array:
    """A column as one Arrow ``string`` array (pandas may hold ``large_string`` chunks)."""
    values = pa.array(column.astype("string").array)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.string())
