"""Snowplow enriched events: one JSON object per line."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import orjson
import pandas as pd

from recs_pipeline.core.events.common import (
    _CONTROL,
    _RAW_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    ParsedLines,
    Pseudonymiser,
    QuarantineRow,
    _combine,
    _finish,
    _raw_text,
    _validated_frame,
    quarantine_frame,
)


def _snowplow_ts(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.astype("string"), format="ISO8601", utc=True, errors="coerce")


def parse_snowplow_lines(
    data: bytes | Iterable[Sequence[bytes]],
    source_file: str,
    hour: pd.Timestamp | None = None,
    users: Pseudonymiser | None = None,
    bot_user_agent_pattern: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ParsedLines:
    """Validate Snowplow enriched events, one JSON object per line.

    ``data`` is a whole file or batches of its lines (streaming). Checks are per line (a bad line
    never spoils its neighbours): UTF-8, size, JSON, required fields, field types, timestamp
    format and plausibility. The page is ``page_url`` when the tracker sent it (host and query are
    then checked by the site's rules), else ``page_urlpath``.
    """
    batches = [data.split(b"\n")] if isinstance(data, bytes) else data
    bot = re.compile(bot_user_agent_pattern, re.IGNORECASE) if bot_user_agent_pattern else None
    parts: list[ParsedLines] = []
    first = 1
    for lines in batches:
        parts.append(_parse_snowplow_batch(lines, first, source_file, users, bot, max_line_bytes))
        first += len(lines)
    return _combine(parts, source_file, hour)


def _parse_snowplow_batch(
    lines: Sequence[bytes],
    first: int,
    source_file: str,
    users: Pseudonymiser | None,
    bot: re.Pattern[str] | None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ParsedLines:
    bad: list[QuarantineRow] = []
    rows: list[tuple[object, ...]] = []
    raw_of: dict[int, bytes] = {}
    count = 0
    limit = MAX_FIELD_CHARS
    for number, line in enumerate(lines, start=first):
        if not line or line.isspace():
            continue
        count += 1
        if len(line) > max_line_bytes:
            bad.append(("oversized", source_file, number, _raw_text(line)))
            continue
        try:
            record = orjson.loads(line)  # rejects bytes that are not UTF-8 too
        except orjson.JSONDecodeError:
            try:
                line.decode("utf-8")
                reason = "invalid_json"
            except UnicodeDecodeError:
                reason = "not_utf8"
            bad.append((reason, source_file, number, _raw_text(line)))
            continue
        if type(record) is not dict:
            bad.append(("invalid_json", source_file, number, _raw_text(line)))
            continue
        get = record.get
        event_id, stamp, user, name = (
            get("event_id"),
            get("collector_tstamp"),
            get("domain_userid"),
            get("event_name"),
        )
        page = get("page_url") or get("page_urlpath")
        if (
            event_id is None
            or event_id == ""
            or stamp is None
            or stamp == ""
            or user is None
            or user == ""
            or name is None
            or name == ""
            or page is None
            or page == ""
        ):
            bad.append(("missing_field", source_file, number, _raw_text(line)))
            continue
        referrer, agent = get("page_referrer"), get("useragent")
        if (
            type(event_id) is not str
            or type(stamp) is not str
            or type(user) is not str
            or type(name) is not str
            or type(page) is not str
            or (referrer is not None and type(referrer) is not str)
            or (agent is not None and type(agent) is not str)
        ):
            bad.append(("wrong_type", source_file, number, _raw_text(line)))
            continue
        if (
            len(event_id) > limit
            or len(stamp) > limit
            or len(user) > limit
            or len(name) > limit
            or len(page) > limit
            or (referrer is not None and len(referrer) > limit)
        ):
            bad.append(("oversized", source_file, number, _raw_text(line)))
            continue
        # JSON refuses raw C0 controls in strings: one can only come from an escape (or be DEL).
        if (b"\\" in line or b"\x7f" in line) and (
            _CONTROL.search(event_id)
            or _CONTROL.search(user)
            or _CONTROL.search(name)
            or _CONTROL.search(page)
            or (referrer is not None and _CONTROL.search(referrer))
        ):
            bad.append(("control_character", source_file, number, _raw_text(line)))
            continue
        rows.append((event_id, stamp, user, name, page, referrer, agent, 0, number))
        raw_of[number] = line
    columns: dict[str, list[object]] = {
        name: list(values)
        for name, values in zip(
            (*_RAW_COLUMNS, "line_no"), zip(*rows, strict=True) if rows else [()] * 9, strict=True
        )
    }
    frame = _validated_frame(columns, raw_of, bad, source_file, _snowplow_ts, users, bot)
    return _finish(ParsedLines(source_file, frame, quarantine_frame(bad), count), users)
