"""Parse, validate, normalise and de-duplicate events; quarantine what is malformed.

Sources hand this module raw lines (Snowplow or GA4 JSON lines) or tables (delimited files, GA4
Parquet, MIND impression logs); it returns the canonical event frame of ``schemas.EVENT_COLUMNS``
and a quarantine frame where every rejected line keeps its reason, file and line number. Nothing
is silently dropped: a line is an event of some day, a duplicate (counted), a non-article page
event (counted by reason), an event of a kind the site ignores (counted) or quarantined.

Which day a line belongs to: a valid event belongs to the day of its timestamp. A line that cannot
be dated (malformed) or whose timestamp contradicts the hour folder it was delivered in belongs to
the file's *home day*, so that exactly one day partition quarantines it, however many day runs
read the file.

Memory: a file is parsed in batches of lines, and only what the canonical frame needs is kept
(a user agent only when it is a bot's, a URL once per distinct value through Arrow strings), so a
day's frame is the bulk of the memory a day run needs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, cast
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
from pandas.api.types import union_categoricals

from recs_pipeline.core import schemas
from recs_pipeline.core.timeframe import day_bounds
from recs_pipeline.core.urls import PageRules, classify

#: Lines longer than this are quarantined as oversized before parsing.
MAX_LINE_BYTES = 32 * 1024
#: Longest id / path accepted; longer fields are quarantined as oversized.
MAX_FIELD_CHARS = 2048
#: Raw text kept per quarantined line (the rest is cut, the reason stays exact).
QUARANTINE_RAW_CHARS = 2000
#: Timestamps before this are absurd for web analytics.
EARLIEST_PLAUSIBLE = pd.Timestamp("2000-01-01", tz="UTC")
#: How far a Snowplow event may stray from its hour folder before it is deemed misplaced.
FOLDER_SLACK = pd.Timedelta(hours=1)
#: Lines parsed at once: bounds the Python objects alive while a file is read.
BATCH_LINES = 65_536
#: C0 control characters and DEL. Browsers never send them in ids or URLs (a cookie or a URL
#: carrying one is forged or corrupt), Postgres text cannot hold NUL, and tabs or newlines would
#: break every delimited export: a line with one in an id, event name, page or referrer is
#: quarantined as ``control_character``.
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
_CONTROL = re.compile(CONTROL_CHARACTERS)
#: Fields checked for control characters (the user agent is only ever compared with a pattern).
CHECKED_FIELDS = ("event_id", "user_id", "article_id", "event_name", "path", "referrer")


def has_control_character(text: str | None) -> bool:
    """Whether ``text`` holds a C0 control character or DEL (see ``CONTROL_CHARACTERS``)."""
    return text is not None and _CONTROL.search(text) is not None


#: ``engagement`` carries engagement time without a view (GA4 ``user_engagement``, ``scroll``).
KNOWN_EVENTS = ("page_view", "page_ping", "engagement")
_RAW_COLUMNS = (
    "event_id",
    "ts",
    "user_id",
    "event_name",
    "path",
    "referrer",
    "user_agent",
    "engaged_ms",
)
_QUARANTINE = ("reason", "source_file", "line_no", "raw")

QuarantineRow = tuple[str, str, int, str]


@dataclass(frozen=True)
class EventRules:
    """The per-site rules that turn a page event into an article event (or a quarantined one)."""

    article_id_pattern: str = r"-(\d+)/?$"
    excluded_path_prefixes: tuple[str, ...] = ()
    bot_user_agent_pattern: str = r"bot|crawler|spider"
    #: ``(regex, reason)``: paths that are not articles, for a reason the metadata counts.
    excluded_path_patterns: tuple[tuple[str, str], ...] = ()
    #: Hosts of the site; a page URL on any other host is not the site's page (empty: any).
    hosts: tuple[str, ...] = ()
    #: Query parameters kept in canonical paths.
    significant_params: tuple[str, ...] = ()
    #: Quarantine event kinds other than ``KNOWN_EVENTS`` (Snowplow: a misrouted tracker);
    #: False counts them as ignored (GA4 exports every kind of event).
    quarantine_unknown_events: bool = True

    @cached_property
    def pages(self) -> PageRules:
        return PageRules(
            article_id_pattern=self.article_id_pattern,
            excluded_path_prefixes=self.excluded_path_prefixes,
            excluded_path_patterns=self.excluded_path_patterns,
            hosts=self.hosts,
            significant_params=self.significant_params,
        )

    @cached_property
    def bot(self) -> re.Pattern[str]:
        return re.compile(self.bot_user_agent_pattern, re.IGNORECASE)


class Pseudonymiser:
    """Keyed hashes of user ids (HMAC-SHA256 with the site's secret salt), per distinct id.

    The same salt gives the same pseudonym on every run, so a reader's history still joins up;
    without the salt the raw id cannot be recovered or confirmed by hashing guesses. Raw text of
    quarantined lines would carry raw ids, so it is redacted.
    """

    def __init__(self, salt: str) -> None:
        if len(salt) < 16:
            raise ValueError("a pseudonymisation salt needs at least 16 characters")
        self._key = salt.encode()

    def __repr__(self) -> str:  # never print the salt
        return "Pseudonymiser(<secret>)"

    def one(self, user: str) -> str:
        return hmac.new(self._key, user.encode(), hashlib.sha256).hexdigest()[:32]

    def apply(self, users: pd.Series) -> pd.Series:
        codes, uniques = pd.factorize(users.astype("string"))
        hashed = pd.array([self.one(str(u)) for u in uniques] + [None], dtype="string")
        return pd.Series(hashed[codes], index=users.index, dtype="string")

    @staticmethod
    def redact(raw: str) -> str:
        return f"<{len(raw)} characters redacted: user ids are pseudonymised>"


@dataclass
class ParsedLines:
    """What one landing file held: candidate events (not yet dated) and rejected lines."""

    source_file: str
    events: pd.DataFrame  # _RAW_COLUMNS + line_no, ts already a UTC timestamp
    quarantine: pd.DataFrame  # reason, source_file, line_no, raw (no date yet)
    lines: int
    #: Start of the hour the file was delivered in, when the layout says so.
    hour: pd.Timestamp | None = None
    #: The day that owns the file's undatable lines, when the layout says so (a GA4 table).
    home: dt.date | None = None
    #: Valid lines of event kinds the site does not use (counted by the home day).
    ignored: int = 0
    #: The file could not be read at all: it is one quarantined line (``unreadable_file``).
    unreadable: bool = False
    #: Events beyond one per line (a MIND row holds several clicks): lines + extra_events =
    #: events + quarantined + ignored, for every file.
    extra_events: int = 0
    #: Events the source left out because they fall outside the run's days (other days' rows
    #: of a click log read by a shorter run): the home day counts them as other days'.
    outside_run: int = 0


@dataclass
class DayEvents:
    """One day partition's events, quarantine and the counts that explain every line."""

    events: pd.DataFrame
    quarantine: pd.DataFrame
    lines_read: int = 0
    duplicates: int = 0
    #: Page views and pings of pages that are not articles (home, sections, authors).
    non_article_events: int = 0
    other_days: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    #: Why the non-article events are not articles (``no_article_id``, ``foreign_host``, ...).
    non_article_by_reason: dict[str, int] = field(default_factory=dict)
    #: Valid events of kinds the site does not use (GA4 ``session_start``, ...).
    ignored_events: int = 0
    #: Events of this day in files another day owns (an hour file of the day before).
    from_other_files: int = 0
    #: Events beyond one per line in the files this day owns (MIND impression rows).
    extra_events: int = 0

    def unaccounted(self) -> int:
        """Lines not explained by the counts: 0 when every line read is an event kept, a
        duplicate, a quarantined line, a non-article event, an ignored event or an event of
        another day (and every event of this day read from another day's files is kept or
        counted too)."""
        explained = (
            len(self.events)
            + self.duplicates
            + len(self.quarantine)
            + self.non_article_events
            + self.ignored_events
            + self.other_days
        )
        return self.lines_read + self.extra_events + self.from_other_files - explained


def quarantine_frame(rows: Sequence[QuarantineRow]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(_QUARANTINE))
    return frame.astype({"reason": "str", "source_file": "str", "line_no": "int64", "raw": "str"})


def _raw_text(line: bytes) -> str:
    return line[:QUARANTINE_RAW_CHARS].decode("utf-8", errors="backslashreplace")


def empty_raw() -> pd.DataFrame:
    """A frame of candidate events without rows."""
    return _empty_raw()


def _empty_raw() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype="string") for name in _RAW_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ms, UTC]")
    frame["engaged_ms"] = pd.Series(dtype="int64")
    frame["line_no"] = pd.Series(dtype="int64")
    return frame


#: Columns with few distinct values per file (and the day): held as categoricals, so a day of
#: ten million events keeps each user id and page once, not once per event.
COMPACT_COLUMNS = ("user_id", "event_name", "path", "referrer", "user_agent", "article_id")


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its repetitive string columns as categoricals (in place; also returned)."""
    for name in COMPACT_COLUMNS:
        if name in frame and not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype("string").astype("category")
    return frame


def concat_events(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames of the same columns stacked; categoricals unioned (``pd.concat`` would turn
    categoricals with different categories into Python objects)."""
    parts = [compact(part) for part in parts]
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    columns: dict[str, object] = {}
    for name in parts[0].columns:
        pieces = [part[name] for part in parts]
        if isinstance(pieces[0].dtype, pd.CategoricalDtype):
            columns[name] = union_categoricals([piece.array for piece in pieces])
        else:
            columns[name] = pd.concat(pieces, ignore_index=True)
    return pd.DataFrame(columns)


def _combine(
    parts: list[ParsedLines], source_file: str, hour: pd.Timestamp | None = None
) -> ParsedLines:
    events = [p.events for p in parts if not p.events.empty]
    quarantine = [p.quarantine for p in parts if not p.quarantine.empty]
    return ParsedLines(
        source_file,
        concat_events(events) if events else compact(_empty_raw()),
        pd.concat(quarantine, ignore_index=True) if quarantine else quarantine_frame([]),
        sum(p.lines for p in parts),
        hour,
        ignored=sum(p.ignored for p in parts),
    )


def _validated_frame(
    columns: dict[str, list[object]],
    raw_of: dict[int, bytes],
    bad: list[QuarantineRow],
    source_file: str,
    ts_parser: Callable[[pd.Series], pd.Series],
    users: Pseudonymiser | None,
    bot: re.Pattern[str] | None,
) -> pd.DataFrame:
    """Typed columns from per-line lists; lines with an unparseable timestamp go to ``bad``."""
    frame = pd.DataFrame(
        {
            name: pd.array(  # type: ignore[call-overload]
                values, dtype="int64" if name in ("line_no", "engaged_ms") else "string"
            )
            for name, values in columns.items()
            if name != "ts"
        }
    )
    stamps = ts_parser(pd.Series(columns["ts"], dtype="object"))
    undated = stamps.isna().to_numpy()
    if undated.any():
        for number in frame.loc[undated, "line_no"]:
            bad.append(("bad_timestamp", source_file, int(number), _raw_text(raw_of[number])))
    frame["ts"] = stamps.astype("datetime64[ms, UTC]")
    frame = frame.loc[~undated].reset_index(drop=True)
    if bot is not None and len(frame):
        # A user agent is only needed to say "bot": keep it for bots only (saves a lot of memory).
        agents = frame["user_agent"]
        frame["user_agent"] = agents.where(agents.str.contains(bot, regex=True).fillna(False))
    if users is not None and len(frame):
        frame["user_id"] = users.apply(frame["user_id"])
    return frame[[*_RAW_COLUMNS, "line_no"]]


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


def _finish(parsed: ParsedLines, users: Pseudonymiser | None) -> ParsedLines:
    if users is not None and not parsed.quarantine.empty:
        parsed.quarantine["raw"] = parsed.quarantine["raw"].map(Pseudonymiser.redact)
    return parsed


# ---------------------------------------------------------------------------------------------
# GA4 export rows


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
    table["event_id"] = (
        pd.util.hash_pandas_object(key, index=False).map("{:016x}".format).astype("string")
    )
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
            name: pd.array(  # type: ignore[call-overload]
                values, dtype="int64" if name in ("line_no", "engaged_ms") else "string"
            )
            for name, values in columns.items()
        }
    )
    return ga4_events(rows, source_file, users, bad, count)


# ---------------------------------------------------------------------------------------------
# Rows of tables (delimited files, GA4 Parquet, MIND)


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
    millis = good["ts"].astype("int64").astype("string")
    good["event_id"] = good["event_id"].fillna(good["user_id"] + "|" + target + "|" + millis)
    parsed = ParsedLines(
        source_file,
        compact(good.reset_index(drop=True)[[*_RAW_COLUMNS, "article_id", "line_no"]]),
        quarantine_frame(rows),
        n,
    )
    return _finish(parsed, users)


def _rows_as_text(rows: pd.DataFrame) -> list[str]:
    if rows.empty:
        return []
    joined = rows.astype("string").fillna("").agg(",".join, axis=1)
    return [text[:QUARANTINE_RAW_CHARS] for text in joined]


# ---------------------------------------------------------------------------------------------
# A day


def home_day(parsed: ParsedLines, tz: ZoneInfo) -> dt.date | None:
    """The day partition that owns a file's undatable or misplaced lines."""
    if parsed.home is not None:
        return parsed.home
    if parsed.hour is not None:
        return parsed.hour.tz_convert(tz).date()
    if parsed.events.empty:
        return None
    return pd.Timestamp(parsed.events["ts"].min()).tz_convert(tz).date()


def assemble_day(
    files: Iterable[ParsedLines],
    day: dt.date,
    tz: ZoneInfo,
    rules: EventRules,
    fallback_home: dt.date | None = None,
    now: pd.Timestamp | None = None,
) -> DayEvents:
    """Keep the events of ``day``, quarantine what the day owns, de-duplicate, find articles.

    ``fallback_home`` is the day that owns undatable lines of files with no hour folder and no
    valid event at all (the site's first day, so they are still counted exactly once).
    """
    start, end = day_bounds(day, tz)
    latest_plausible = (pd.Timestamp.now(tz="UTC") if now is None else now) + pd.Timedelta(days=1)
    kept: list[pd.DataFrame] = []
    file_names: list[str] = []
    quarantined: list[pd.DataFrame] = []
    lines_read = other_days = ignored = from_other_files = extra_events = 0
    for parsed in files:
        owner = home_day(parsed, tz) or fallback_home
        owns = owner == day
        events = parsed.events
        absurd = (events["ts"] < EARLIEST_PLAUSIBLE) | (events["ts"] > latest_plausible)
        misplaced = absurd.copy()
        if parsed.hour is not None:
            misplaced |= (events["ts"] < parsed.hour - FOLDER_SLACK) | (
                events["ts"] >= parsed.hour + pd.Timedelta(hours=1) + FOLDER_SLACK
            )
        if owns:
            lines_read += parsed.lines
            ignored += parsed.ignored
            quarantined.append(parsed.quarantine)
            if misplaced.any():
                moved = events.loc[misplaced, ["line_no"]].assign(
                    reason=np.where(absurd[misplaced], "absurd_timestamp", "outside_file_hour"),
                    source_file=parsed.source_file,
                    raw=_rows_as_text(events.loc[misplaced, list(_RAW_COLUMNS)]),
                )
                quarantined.append(moved[list(_QUARANTINE)])
        in_day = ~misplaced & (events["ts"] >= start) & (events["ts"] < end)
        if owns:
            other_days += int((~misplaced & ~in_day).sum()) + parsed.outside_run
            extra_events += parsed.extra_events
        else:
            from_other_files += int(in_day.sum())
        if in_day.any():
            part = events if bool(in_day.all()) else events.loc[in_day]
            part["file_index"] = np.int32(len(file_names))  # a cached frame may get it: harmless
            kept.append(part)
            file_names.append(parsed.source_file)
        del events, parsed  # a drained list frees each file's frame once it is copied

    events = concat_events(kept) if kept else compact(_empty_raw().assign(file_index=0))
    del kept
    # Deterministic order first, so "keep the first copy" means the same copy on every re-run.
    events = events.sort_values(["ts", "event_id", "line_no"], kind="stable", ignore_index=True)
    duplicate = events["event_id"].duplicated(keep="first").to_numpy()
    duplicates = int(duplicate.sum())

    bad_rows: list[pd.DataFrame] = []
    agent = events["user_agent"]
    is_bot = (agent.str.contains(rules.bot, regex=True).fillna(False).to_numpy()) & ~duplicate
    unknown = ~events["event_name"].isin(KNOWN_EVENTS).to_numpy() & ~is_bot & ~duplicate
    to_quarantine = [("bot", is_bot)]
    if rules.quarantine_unknown_events:
        to_quarantine.append(("unknown_event", unknown))
    else:
        ignored += int(unknown.sum())
    names = np.array(file_names or [""], dtype=object)
    for reason, mask in to_quarantine:
        if mask.any():
            rows = events.loc[mask]
            bad_rows.append(
                pd.DataFrame(
                    {
                        "reason": reason,
                        "source_file": names[rows["file_index"].to_numpy()].astype(str),
                        "line_no": rows["line_no"].astype("int64"),
                        "raw": _rows_as_text(rows[list(_RAW_COLUMNS)]),
                    }
                )
            )
    candidate = ~duplicate & ~is_bot & ~unknown
    given = events["article_id"][candidate] if "article_id" in events else None
    pages = classify(events["path"][candidate], rules.pages, given)
    non_article = pages.article_id.isna()
    non_article_by_reason = dict(Counter(pages.reason[non_article].fillna("no_article_id")))
    keep = pages.path.index[~non_article.to_numpy()]
    events = events.loc[keep, [name for name in schemas.EVENT_COLUMNS if name in events]]
    events["article_id"] = pages.article_id[keep]
    events["path"] = pages.path[keep]

    parts = [frame for frame in (*quarantined, *bad_rows) if not frame.empty]
    quarantine = pd.concat(parts, ignore_index=True) if parts else quarantine_frame([])
    quarantine = quarantine.sort_values(["source_file", "line_no", "reason"], kind="stable")
    quarantine.insert(0, schemas.DATE, day.isoformat())
    events[schemas.DATE] = day.isoformat()
    out = events[list(schemas.EVENT_COLUMNS)]
    return DayEvents(
        events=out.reset_index(drop=True).astype(
            {name: "string" for name in schemas.EVENT_COLUMNS if name not in ("ts", "engaged_ms")}
            | {"engaged_ms": "int64"}
        ),
        quarantine=quarantine.reset_index(drop=True),
        lines_read=lines_read,
        duplicates=duplicates,
        non_article_events=int(non_article.sum()),
        other_days=other_days,
        quarantined_by_reason=dict(Counter(quarantine["reason"])),
        non_article_by_reason={str(k): int(v) for k, v in non_article_by_reason.items()},
        ignored_events=ignored,
        from_other_files=from_other_files,
        extra_events=extra_events,
    )


def article_ids(given: pd.Series | None, events: pd.DataFrame, rules: EventRules) -> pd.Series:
    """The article id of each event: given by the source, else from the path by the site's rules.

    Paths under an excluded prefix (sections, authors, tags) are never articles.
    """
    return classify(events["path"], rules.pages, given).article_id
