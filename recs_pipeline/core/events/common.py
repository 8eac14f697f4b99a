"""What every event format shares: limits, the site's rules, pseudonyms, the frames of
candidate events and quarantined lines, and the helpers that build them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import union_categoricals

from recs_pipeline.core.urls import PageRules

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
    """Rows as a frame, column by column (a frame of tuples then ``astype`` took ~10 ms even
    without rows, and a day builds one per file)."""
    if not rows:
        return _empty_quarantine().copy()
    reason, source_file, line_no, raw = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "reason": pd.Series(reason, dtype="str"),
            "source_file": pd.Series(source_file, dtype="str"),
            "line_no": np.asarray(line_no, dtype=np.int64),
            "raw": pd.Series(raw, dtype="str"),
        }
    )


@cache
def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "reason": pd.Series([], dtype="str"),
            "source_file": pd.Series([], dtype="str"),
            "line_no": np.zeros(0, dtype=np.int64),
            "raw": pd.Series([], dtype="str"),
        }
    )


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
            frame[name] = categorical(frame[name])
    return frame


def categorical(column: pd.Series) -> pd.Series:
    """A string column as a categorical, encoded by Arrow (``astype("category")`` sorts the
    distinct values in Python's order and builds them twice). Categories are in order of first
    appearance; missing stays missing."""
    values = _arrow_strings(column)
    if not len(values):
        return column.astype("string").astype("category")
    return pd.Series(arrow_categorical(values), index=column.index, name=column.name)


def arrow_categorical(values: pa.Array | pa.ChunkedArray) -> pd.Categorical:
    """Arrow strings as a pandas categorical, dictionary-encoded by Arrow (categories in order
    of first appearance, missing values missing)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not len(values):
        return pd.Categorical(pd.array([], dtype="string"))
    if not pa.types.is_dictionary(values.type):
        values = pc.dictionary_encode(values)
    codes = pc.fill_null(values.indices, -1).to_numpy(zero_copy_only=False)
    categories = pd.Index(string_series(values.dictionary), dtype="string")
    return pd.Categorical.from_codes(codes, categories=categories)


def as_strings(column: pd.Series) -> pd.Series:
    """A ``string`` column; from a categorical through Arrow (each category converted once,
    then taken by code), where ``astype("string")`` makes a Python object per row."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return column.astype("string")
    decoded = pa.array(column.array).dictionary_decode()
    return pd.Series(string_series(decoded).array, index=column.index, name=column.name)


def _arrow_strings(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return pa.array(column.array).dictionary_decode()
    array = column.astype("string").array
    return pa.array(array)


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
        elif isinstance(pieces[0].dtype, pd.StringDtype) and pieces[0].dtype.storage == "pyarrow":
            # One Arrow array, not one chunk per part: a take or a hash over many chunks is
            # several times slower (the day's sort and de-duplication run on it).
            chunks = pa.chunked_array([pa.array(piece.array) for piece in pieces])
            columns[name] = string_series(chunks.combine_chunks())
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
            name: np.asarray(values, dtype=np.int64)
            if name in ("line_no", "engaged_ms")
            else string_series(values)
            for name, values in columns.items()
            if name != "ts"
        }
    )
    stamps = pd.Series(columns["ts"], dtype="object")
    return _dated_frame(frame, stamps, raw_of.__getitem__, bad, source_file, ts_parser, users, bot)


_STRING_TYPES = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}


def string_series(values: Sequence[object] | pa.Array | pa.ChunkedArray) -> pd.Series:
    """A ``string`` column from Python strings (or None) or an Arrow string array, built by
    Arrow in one pass (``pd.array(..., dtype="string")`` checks every value in Python first)."""
    array = (
        values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, pa.string())
    )
    return pd.Series(array.to_pandas(types_mapper=_STRING_TYPES.get), dtype="string")


def _dated_frame(
    frame: pd.DataFrame,
    stamps_text: pd.Series,
    raw_of: Callable[[int], bytes],
    bad: list[QuarantineRow],
    source_file: str,
    ts_parser: Callable[[pd.Series], pd.Series],
    users: Pseudonymiser | None,
    bot: re.Pattern[str] | None,
) -> pd.DataFrame:
    """``frame`` (string columns, ``line_no``, ``engaged_ms``) with its timestamps parsed from
    ``stamps_text``; lines whose timestamp does not parse go to ``bad`` (their raw text from
    ``raw_of(line_no)``), user agents kept for bots only, user ids pseudonymised."""
    stamps = ts_parser(stamps_text)
    undated = stamps.isna().to_numpy()
    if undated.any():
        for number in frame.loc[undated, "line_no"]:
            bad.append(("bad_timestamp", source_file, int(number), _raw_text(raw_of(number))))
    frame["ts"] = stamps.astype("datetime64[ms, UTC]")
    frame = frame.loc[~undated].reset_index(drop=True)
    if bot is not None and len(frame):
        # A user agent is only needed to say "bot": keep it for bots only (saves a lot of memory).
        agents = frame["user_agent"]
        frame["user_agent"] = agents.where(agents.str.contains(bot, regex=True).fillna(False))
    if users is not None and len(frame):
        frame["user_id"] = users.apply(frame["user_id"])
    return frame[[*_RAW_COLUMNS, "line_no"]]


def _finish(parsed: ParsedLines, users: Pseudonymiser | None) -> ParsedLines:
    if users is not None and not parsed.quarantine.empty:
        parsed.quarantine["raw"] = parsed.quarantine["raw"].map(Pseudonymiser.redact)
    return parsed


def _rows_as_text(rows: pd.DataFrame) -> list[str]:
    if rows.empty:
        return []
    # Column by column (a row-wise join is Python per row): each value as its text, missing "".
    texts = [rows[name].astype("string").fillna("") for name in rows.columns]
    joined = texts[0]
    for text in texts[1:]:
        joined = joined + "," + text
    return [text[:QUARANTINE_RAW_CHARS] for text in joined.tolist()]
