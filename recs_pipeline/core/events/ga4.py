"""GA4 export rows (JSON lines or Parquet): validated, then checked as rows of a table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from recs_pipeline.core.events.common import (
    KNOWN_EVENTS,
    MAX_LINE_BYTES,
    ParsedLines,
    Pseudonymiser,
    QuarantineRow,
    _combine,
    _raw_text,
    _rows_as_text,
    quarantine_frame,
    string_series,
)
from recs_pipeline.core.events.tables import events_from_table

#: GA4 event parameters the pipeline reads, and the value field each is in.
GA4_PARAMS = {
    "page_location": "string_value",
    "page_referrer": "string_value",
    "engagement_time_msec": "int_value",
}


def _ga4_param(params: object, key: str) -> object:
    if not isinstance(params, list):
        return None
    for item in params:
        if isinstance(item, dict) and item.get("key") == key:
            value = item.get("value")
            if not isinstance(value, dict):
                return None
            found = value.get(GA4_PARAMS[key])
            if found is None:  # exports sometimes put numbers in another value field
                for other in ("int_value", "double_value", "float_value", "string_value"):
                    if value.get(other) is not None:
                        return value[other]
            return found
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    return None


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLES = np.arange(60, -4, -4, dtype=np.uint64)


def hex16(values: np.ndarray) -> pa.Array:
    """Each unsigned 64-bit integer as 16 lowercase hex digits (``"{:016x}".format``), built
    as one Arrow buffer of fixed-width text, not a Python string per row."""
    n = len(values)
    digits = _HEX[(values.astype(np.uint64)[:, None] >> _NIBBLES) & np.uint64(0xF)]
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes())]
    )


def ga4_events(
    rows: pd.DataFrame,
    source_file: str,
    users: Pseudonymiser | None = None,
    quarantined: Sequence[QuarantineRow] = (),
    lines: int | None = None,
) -> ParsedLines:
    """Validate GA4 rows already pulled out of the export (JSON lines or Parquet).

    ``rows`` has ``ts`` (event_timestamp, µs), ``event_name``, ``user_id`` (user_pseudo_id),
    ``path`` (page_location), ``referrer``, ``engaged_ms`` and ``line_no``. Page views stay views;
    other events with engagement time become ``engagement``; the rest are counted as ignored.
    GA4 rows have no id: the same (user, microsecond, event, page) is the same event.
    """
    quarantined = list(quarantined)
    unnamed = rows["event_name"].isna().to_numpy()
    if unnamed.any():
        texts = _rows_as_text(rows.loc[unnamed])
        numbers = rows.loc[unnamed, "line_no"].tolist()
        quarantined += [
            ("missing_field", source_file, int(n), text)
            for n, text in zip(numbers, texts, strict=True)
        ]
        rows = rows.loc[~unnamed]
    engaged = pd.to_numeric(rows["engaged_ms"], errors="coerce").fillna(0)
    names = rows["event_name"].astype("string")
    kind = names.where(names == "page_view", names.where(engaged <= 0, "engagement"))
    relevant = kind.isin(KNOWN_EVENTS).fillna(False)
    ignored = int((~relevant).sum())
    table = rows.loc[relevant].assign(event_name=kind[relevant], engaged_ms=engaged[relevant])
    table["event_name"] = table["event_name"].astype("string")
    key = table[["user_id", "ts", "path"]].assign(name=names[relevant]).astype("string")
    if users is not None:
        # The id is derived from the user id: keyed like it, or a guessed raw id could be
        # confirmed against the lake by hashing it.
        key["user_id"] = users.apply(key["user_id"])
    key = key.fillna("")
    hashes = pd.util.hash_pandas_object(key, index=False).to_numpy(dtype=np.uint64)
    table["event_id"] = pd.Series(string_series(hex16(hashes)).array, index=table.index)
    parsed = events_from_table(
        table, source_file, "us", line_numbers=table["line_no"].to_numpy(), users=users
    )
    if quarantined:
        extra = quarantine_frame(quarantined)
        if users is not None:
            extra["raw"] = extra["raw"].map(Pseudonymiser.redact)
        parsed.quarantine = pd.concat([parsed.quarantine, extra], ignore_index=True)
    parsed.lines = len(rows) + len(quarantined) if lines is None else lines
    parsed.ignored = ignored
    return parsed


def parse_ga4_lines(
    batches: Iterable[Sequence[bytes]],
    source_file: str,
    home: dt.date | None = None,
    users: Pseudonymiser | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ParsedLines:
    """Validate GA4 export rows written as JSON lines (BigQuery's newline-delimited JSON).

    Required: ``event_timestamp`` (µs, number or digit string), ``event_name``,
    ``user_pseudo_id``, and for page views and engagement a ``page_location`` event parameter.
    """
    parts: list[ParsedLines] = []
    first = 1
    for lines in batches:
        parts.append(_parse_ga4_batch(lines, first, source_file, users, max_line_bytes))
        first += len(lines)
    parsed = _combine(parts, source_file)
    parsed.home = home
    return parsed


def _parse_ga4_batch(
    lines: Sequence[bytes],
    first: int,
    source_file: str,
    users: Pseudonymiser | None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ParsedLines:
    bad: list[QuarantineRow] = []
    names = ("ts", "event_name", "user_id", "path", "referrer", "engaged_ms", "line_no")
    columns: dict[str, list[object]] = {name: [] for name in names}
    count = 0
    for number, line in enumerate(lines, start=first):
        if not line.strip():
            continue
        count += 1
        if len(line) > max_line_bytes:
            bad.append(("oversized", source_file, number, _raw_text(line)))
            continue
        try:
            line.decode("utf-8")
            record = orjson.loads(line)
        except UnicodeDecodeError:
            bad.append(("not_utf8", source_file, number, _raw_text(line)))
            continue
        except orjson.JSONDecodeError:
            bad.append(("invalid_json", source_file, number, _raw_text(line)))
            continue
        if not isinstance(record, dict):
            bad.append(("invalid_json", source_file, number, _raw_text(line)))
            continue
        stamp, name, user = (
            record.get("event_timestamp"),
            record.get("event_name"),
            record.get("user_pseudo_id"),
        )
        if stamp is None or name is None or user is None:
            bad.append(("missing_field", source_file, number, _raw_text(line)))
            continue
        params = record.get("event_params")
        micros = _as_int(stamp)
        engaged = _ga4_param(params, "engagement_time_msec")
        engaged_ms = 0 if engaged is None else _as_int(engaged)
        page = _ga4_param(params, "page_location")
        referrer = _ga4_param(params, "page_referrer")
        if (
            micros is None
            or engaged_ms is None
            or not isinstance(name, str)
            or not isinstance(user, str)
            or (params is not None and not isinstance(params, list))
            or not (page is None or isinstance(page, str))
            or not (referrer is None or isinstance(referrer, str))
        ):
            bad.append(("wrong_type", source_file, number, _raw_text(line)))
            continue
        for column, value in zip(
            names, (str(micros), name, user, page, referrer, engaged_ms, number), strict=True
        ):
            columns[column].append(value)
    rows = pd.DataFrame(
        {
            name: np.asarray(values, dtype=np.int64)
            if name in ("line_no", "engaged_ms")
            else string_series(values)  # by Arrow: pd.array checks each value in Python
            for name, values in columns.items()
        }
    )
    return ga4_events(rows, source_file, users, bad, count)
