"""Snowplow enriched events: one JSON object per line.

Two paths give the same events and the same quarantine: ``parse_snowplow_lines`` validates line
by line (every reason a line can be refused for), ``parse_snowplow_fast`` parses each line and
checks the columns in bulk, and hands the validator only the lines it cannot vouch for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import msgspec
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recs_pipeline.core.events.common import (
    _CONTROL,
    _RAW_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    ParsedLines,
    Pseudonymiser,
    QuarantineRow,
    _combine,
    _dated_frame,
    _finish,
    _raw_text,
    _validated_frame,
    compact,
    quarantine_frame,
    string_series,
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
    return _parse_batches(
        _parse_snowplow_batch,
        batches,
        source_file,
        hour,
        users,
        bot_user_agent_pattern,
        max_line_bytes,
    )


def _parse_batches(
    parse: Callable[
        [Sequence[bytes], int, str, Pseudonymiser | None, re.Pattern[str] | None, int],
        ParsedLines,
    ],
    batches: Iterable[Sequence[bytes]],
    source_file: str,
    hour: pd.Timestamp | None,
    users: Pseudonymiser | None,
    bot_user_agent_pattern: str | None,
    max_line_bytes: int,
) -> ParsedLines:
    """Each batch through ``parse`` with its first line number, then one combined result."""
    bot = re.compile(bot_user_agent_pattern, re.IGNORECASE) if bot_user_agent_pattern else None
    parts: list[ParsedLines] = []
    first = 1
    for lines in batches:
        parts.append(parse(lines, first, source_file, users, bot, max_line_bytes))
        first += len(lines)
    return _combine(parts, source_file, hour)


def _parse_snowplow_batch(
    lines: Sequence[bytes],
    first: int,
    source_file: str,
    users: Pseudonymiser | None,
    bot: re.Pattern[str] | None,
    max_line_bytes: int = MAX_LINE_BYTES,
    numbers: Iterable[int] | None = None,
) -> ParsedLines:
    """The lines numbered from ``first`` (or by ``numbers``), validated one by one."""
    bad: list[QuarantineRow] = []
    rows: list[tuple[object, ...]] = []
    raw_of: dict[int, bytes] = {}
    count = 0
    limit = MAX_FIELD_CHARS
    numbered = (
        enumerate(lines, start=first) if numbers is None else zip(numbers, lines, strict=True)
    )
    for number, line in numbered:
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


def parse_snowplow_fast(
    batches: Iterable[Sequence[bytes]],
    source_file: str,
    hour: pd.Timestamp | None = None,
    users: Pseudonymiser | None = None,
    bot_user_agent_pattern: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ParsedLines:
    """``parse_snowplow_lines`` column-wise: the same events and quarantine.

    Per line only the JSON is parsed and the members taken (orjson: what a bulk reader would
    have to agree with); sizes, empty members and timestamps are checked on whole columns. A
    line that fails anything (not JSON, a member missing or of another type, an escape or DEL
    that may hide a control character, a check on the columns) goes through the line-by-line
    validator, which gives its reason.
    """
    return _parse_batches(
        _fast_batch, batches, source_file, hour, users, bot_user_agent_pattern, max_line_bytes
    )


class _Members(msgspec.Struct, gc=False):
    """The members the fast path takes, each of the only type the validator accepts for it
    (a member of another type fails the decode; members not named here are skipped)."""

    event_id: str
    collector_tstamp: str
    domain_userid: str
    event_name: str
    page_url: str | None = None
    page_urlpath: str | None = None
    page_referrer: str | None = None
    useragent: str | None = None


_DECODE = msgspec.json.Decoder(_Members).decode
#: A number token that orjson (the validator's parser) refuses as too large for a double, which
#: msgspec skips without converting when it is in a member the fast path does not take: an
#: exponent of three digits or twenty digits in a row (also inside strings: conservative).
_HUGE_NUMBER = r"[:,\[][ \t\r]*-?[0-9]+(?:\.[0-9]*)?[eE][+-]?[0-9]{3}|[0-9]{20}"
_HUGE = re.compile(_HUGE_NUMBER.encode())
#: Lines to look at again: an escape or DEL (may hide a control character; a key may be spelled
#: with escapes), a byte >= 0x80 (msgspec does not check the UTF-8 of members it skips), a
#: number orjson refuses. Arrow matches bytes (Latin-1) in a binary array.
_LOOK_AGAIN = r"[\\\x7f\x80-\xff]|" + _HUGE_NUMBER

#: The scanning thread's pool and the process it belongs to: a forked child inherits the pool
#: but not its thread (the pool would take work and never run it), so it makes its own.
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _flagged(lines: Sequence[bytes]) -> Future[np.ndarray]:
    """Lines matching ``_LOOK_AGAIN``, found by Arrow's regex engine in a thread of its own
    (Arrow releases the GIL) while the main thread decodes the lines."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="snowplow-scan"))

    def scan() -> np.ndarray:
        binary = pa.array(lines, pa.binary())
        found = pc.match_substring_regex(binary, _LOOK_AGAIN)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)

    return _pool[1].submit(scan)


def _needs_validator(line: bytes) -> bool:
    """A line ``_LOOK_AGAIN`` flagged: whether it is one the fast path may not take (an escape,
    DEL, bytes that are not UTF-8, a number orjson refuses) or only carries valid UTF-8."""
    if b"\\" in line or b"\x7f" in line or _HUGE.search(line) is not None:
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _fast_batch(
    lines: Sequence[bytes],
    first: int,
    source_file: str,
    users: Pseudonymiser | None,
    bot: re.Pattern[str] | None,
    max_line_bytes: int,
) -> ParsedLines:
    decode = _DECODE
    records: list[_Members] = []
    taken: list[int] = []
    slow: list[int] = []
    scan = _flagged(lines)
    for position, line in enumerate(lines):
        try:
            records.append(decode(line))
            taken.append(position)
        except (msgspec.MsgspecError, RecursionError):
            slow.append(position)  # not JSON, not an object, a member missing or mistyped
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    refused = (lengths > max_line_bytes) | scan.result()
    for position in np.flatnonzero(refused & (lengths <= max_line_bytes)).tolist():
        refused[position] = _needs_validator(lines[position])
    if refused[taken].any():
        keep = ~refused[taken]
        slow += np.asarray(taken, dtype=np.int64)[~keep].tolist()
        records = [record for record, kept in zip(records, keep.tolist(), strict=True) if kept]
        taken = [position for position, kept in zip(taken, keep.tolist(), strict=True) if kept]
    slow.sort()
    arrays = {
        "event_id": pa.array([r.event_id for r in records], pa.string()),
        "ts": pa.array([r.collector_tstamp for r in records], pa.string()),
        "user_id": pa.array([r.domain_userid for r in records], pa.string()),
        "event_name": pa.array([r.event_name for r in records], pa.string()),
        "path": pa.array([r.page_url or r.page_urlpath for r in records], pa.string()),
        "referrer": pa.array([r.page_referrer for r in records], pa.string()),
        "user_agent": pa.array([r.useragent for r in records], pa.string()),
    }
    del records
    good = np.ones(len(taken), dtype=bool)
    for name in ("event_id", "ts", "user_id", "event_name", "path", "referrer"):
        length = pc.utf8_length(arrays[name])
        fits = pc.less_equal(length, MAX_FIELD_CHARS)
        if name != "referrer":
            # Required: present (a page may be missing) and not empty.
            fits = pc.fill_null(pc.and_(fits, pc.greater(length, 0)), False)
        good &= pc.fill_null(fits, True).to_numpy(zero_copy_only=False)
    positions = np.asarray(taken, dtype=np.int64)
    if not good.all():
        slow += positions[~good].tolist()
        slow.sort()
        mask = pa.array(good)
        arrays = {name: pc.filter(values, mask) for name, values in arrays.items()}
        positions = positions[good]
    slow_part = _parse_snowplow_batch(
        [lines[i] for i in slow],
        first,
        source_file,
        users,
        bot,
        max_line_bytes,
        numbers=[first + i for i in slow],
    )
    frame = pd.DataFrame(
        {name: string_series(values) for name, values in arrays.items() if name != "ts"}
    )
    frame["engaged_ms"] = np.zeros(len(positions), dtype=np.int64)
    frame["line_no"] = positions + first
    bad: list[QuarantineRow] = []

    def raw_of(number: int) -> bytes:
        return lines[int(number) - first]

    stamps = string_series(arrays["ts"])
    fast = _dated_frame(frame, stamps, raw_of, bad, source_file, _snowplow_ts, users, bot)
    fast_part = _finish(
        ParsedLines(source_file, fast, quarantine_frame(bad), len(positions)), users
    )
    return ParsedLines(
        source_file,
        _in_line_order(fast_part.events, slow_part.events),
        _in_line_order(fast_part.quarantine, slow_part.quarantine),
        fast_part.lines + slow_part.lines,
    )


def _in_line_order(fast: pd.DataFrame, slow: pd.DataFrame) -> pd.DataFrame:
    """Rows of both parts (each in line order) in line order; no copy when one is empty."""
    if slow.empty:
        return fast
    if fast.empty:
        return slow
    rows = pd.concat([fast, slow], ignore_index=True)
    return rows.iloc[np.argsort(rows["line_no"].to_numpy(), kind="stable")].reset_index(drop=True)


def parse_snowplow_group(
    files: Sequence[tuple[str, list[bytes]]],
    users: Pseudonymiser | None = None,
    bot_user_agent_pattern: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> list[ParsedLines]:
    """Small files parsed together: what ``parse_snowplow_fast`` gives for each ``(name, lines)``,
    from one pass over all their lines (a small file costs no more per line than a big one)."""
    bot = re.compile(bot_user_agent_pattern, re.IGNORECASE) if bot_user_agent_pattern else None
    lines: list[bytes] = []
    starts: list[int] = []
    for _, file_lines in files:
        starts.append(len(lines))
        lines.extend(file_lines)
    whole = _fast_batch(lines, 1, "", users, bot, max_line_bytes)
    events = compact(whole.events)  # once for the group; each file's rows are a slice of it
    quarantine = whole.quarantine
    # Both are in line order: each file's rows are one contiguous range.
    bounds = np.asarray([*starts, len(lines)], dtype=np.int64) + 1
    event_cuts = np.searchsorted(events["line_no"].to_numpy(), bounds, side="left")
    bad_cuts = np.searchsorted(quarantine["line_no"].to_numpy(), bounds, side="left")
    parsed = []
    for index, (name, _) in enumerate(files):
        own = events.iloc[event_cuts[index] : event_cuts[index + 1]].reset_index(drop=True)
        own["line_no"] -= starts[index]
        bad = quarantine.iloc[bad_cuts[index] : bad_cuts[index + 1]].reset_index(drop=True)
        bad["line_no"] -= starts[index]
        bad["source_file"] = name
        # Every line that is not empty is one event or one quarantined line.
        parsed.append(
            ParsedLines(name, own, bad.astype({"source_file": "str"}), len(own) + len(bad))
        )
    return parsed
