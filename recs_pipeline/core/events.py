"""Parse, validate, normalise and de-duplicate events; quarantine what is malformed.

Sources hand this module raw bytes (Snowplow JSON lines) or Arrow tables (delimited files); it
returns the canonical event frame of ``schemas.EVENT_COLUMNS`` and a quarantine frame where every
rejected line keeps its reason, file and line number. Nothing is silently dropped: a line is either
an event of some day, a duplicate (counted), a non-article page event (counted) or quarantined.

Which day a line belongs to: a valid event belongs to the day of its timestamp. A line that cannot
be dated (malformed) or whose timestamp contradicts the hour folder it was delivered in belongs to
the file's *home day*, so that exactly one day partition quarantines it, however many day runs
read the file.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd

from recs_pipeline.core import schemas
from recs_pipeline.core.timeframe import day_bounds

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

KNOWN_EVENTS = ("page_view", "page_ping")
_RAW_COLUMNS = ("event_id", "ts", "user_id", "event_name", "path", "referrer", "user_agent")


@dataclass(frozen=True)
class EventRules:
    """The per-site rules that turn a page event into an article event (or a quarantined one)."""

    article_id_pattern: str = r"-(\d+)/?$"
    excluded_path_prefixes: tuple[str, ...] = ()
    bot_user_agent_pattern: str = r"bot|crawler|spider"


@dataclass
class ParsedLines:
    """What one landing file held: candidate events (not yet dated) and rejected lines."""

    source_file: str
    events: pd.DataFrame  # _RAW_COLUMNS + line_no, ts already a UTC timestamp
    quarantine: pd.DataFrame  # reason, source_file, line_no, raw (no date yet)
    lines: int
    #: Start of the hour the file was delivered in, when the layout says so.
    hour: pd.Timestamp | None = None


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


def _quarantine_frame(rows: Sequence[tuple[str, str, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["reason", "source_file", "line_no", "raw"])
    return frame.astype({"reason": "str", "source_file": "str", "line_no": "int64", "raw": "str"})


def _raw_text(line: bytes) -> str:
    return line[:QUARANTINE_RAW_CHARS].decode("utf-8", errors="backslashreplace")


def parse_snowplow_lines(
    data: bytes, source_file: str, hour: pd.Timestamp | None = None
) -> ParsedLines:
    """Validate Snowplow enriched events, one JSON object per line.

    Checks are per line (a bad line never spoils its neighbours): UTF-8, size, JSON, required
    fields, field types, timestamp format and plausibility. The loop is the only per-line Python;
    timestamp parsing is vectorised afterwards.
    """
    bad: list[tuple[str, str, int, str]] = []
    columns: dict[str, list[object]] = {name: [] for name in (*_RAW_COLUMNS, "line_no")}
    lines = data.split(b"\n")
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        if len(line) > MAX_LINE_BYTES:
            bad.append(("oversized", source_file, number, _raw_text(line)))
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(("not_utf8", source_file, number, _raw_text(line)))
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(("invalid_json", source_file, number, _raw_text(line)))
            continue
        if not isinstance(record, dict):
            bad.append(("invalid_json", source_file, number, _raw_text(line)))
            continue
        values = (
            record.get("event_id"),
            record.get("collector_tstamp"),
            record.get("domain_userid"),
            record.get("event_name"),
            record.get("page_urlpath"),
        )
        if any(value is None or value == "" for value in values):
            bad.append(("missing_field", source_file, number, _raw_text(line)))
            continue
        referrer, user_agent = record.get("page_referrer"), record.get("useragent")
        if not all(isinstance(value, str) for value in values) or not all(
            value is None or isinstance(value, str) for value in (referrer, user_agent)
        ):
            bad.append(("wrong_type", source_file, number, _raw_text(line)))
            continue
        if any(len(value) > MAX_FIELD_CHARS for value in values):  # type: ignore[arg-type]
            bad.append(("oversized", source_file, number, _raw_text(line)))
            continue
        for name, value in zip(_RAW_COLUMNS, (*values, referrer, user_agent), strict=True):
            columns[name].append(value)
        columns["line_no"].append(number)

    frame = pd.DataFrame(columns)
    stamps = pd.to_datetime(frame["ts"], format="ISO8601", utc=True, errors="coerce")
    undated = stamps.isna().to_numpy()
    if undated.any():
        raw_of = {number: lines[number - 1] for number in frame.loc[undated, "line_no"]}
        bad.extend(
            ("bad_timestamp", source_file, int(n), _raw_text(raw_of[n]))
            for n in frame.loc[undated, "line_no"]
        )
    frame["ts"] = stamps.astype("datetime64[ms, UTC]")
    frame = frame.loc[~undated].reset_index(drop=True)
    return ParsedLines(source_file, frame, _quarantine_frame(bad), count, hour)


def events_from_table(
    table: pd.DataFrame,
    source_file: str,
    timestamp_unit: str,
    timestamp_timezone: str = "UTC",
    line_offset: int = 2,
) -> ParsedLines:
    """Validate rows of a delimited file already renamed to the canonical column names.

    ``table`` holds string columns ``user_id``, ``ts`` and optionally ``article_id``, ``path``,
    ``event_id``, ``event_name``, ``referrer``, ``user_agent``. Rows without an event name are
    clicks (``page_view``); rows without an event id get a deterministic one from
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
        frame[name] = (
            table[name].astype("string") if name in table else pd.Series(pd.NA, index=frame.index)
        )
    frame["line_no"] = np.arange(line_offset, line_offset + n, dtype="int64")
    raw_ts = table["ts"].astype("string")
    if timestamp_unit == "iso":
        stamps = pd.to_datetime(raw_ts, format="ISO8601", errors="coerce")
        if getattr(stamps.dt, "tz", None) is None:
            stamps = stamps.dt.tz_localize(timestamp_timezone, ambiguous="NaT")
        stamps = stamps.dt.tz_convert("UTC")
    else:
        numbers = pd.to_numeric(raw_ts, errors="coerce")
        unit = cast(Literal["s", "ms", "us", "ns"], timestamp_unit)
        stamps = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    frame["ts"] = stamps

    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")
    has_target = frame["article_id"].notna() | frame["path"].notna()
    reasons = reasons.mask(frame["user_id"].isna() | ~has_target | raw_ts.isna(), "missing_field")
    reasons = reasons.mask(reasons.isna() & frame["ts"].isna(), "bad_timestamp")
    too_long = (
        (frame["user_id"].str.len() > MAX_FIELD_CHARS)
        | (frame["article_id"].str.len() > MAX_FIELD_CHARS)
        | (frame["path"].str.len() > MAX_FIELD_CHARS)
    ).fillna(False)
    reasons = reasons.mask(reasons.isna() & too_long, "oversized")

    rejected = reasons.notna().to_numpy()
    quarantine = pd.DataFrame(
        {
            "reason": reasons[rejected].astype("str"),
            "source_file": source_file,
            "line_no": frame.loc[rejected, "line_no"],
            "raw": _rows_as_text(table.loc[rejected]),
        }
    )
    good = frame.loc[~rejected].copy()
    good["event_name"] = good["event_name"].fillna("page_view")
    good["ts"] = good["ts"].astype("datetime64[ms, UTC]")
    target = good["article_id"].fillna(good["path"])
    millis = good["ts"].astype("int64").astype("string")
    good["event_id"] = good["event_id"].fillna(good["user_id"] + "|" + target + "|" + millis)
    rows = [(str(r), str(f), int(no), str(t)) for r, f, no, t in quarantine.itertuples(index=False)]
    return ParsedLines(source_file, good.reset_index(drop=True), _quarantine_frame(rows), n)


def _rows_as_text(rows: pd.DataFrame) -> list[str]:
    if rows.empty:
        return []
    joined = rows.astype("string").fillna("").agg(",".join, axis=1)
    return [text[:QUARANTINE_RAW_CHARS] for text in joined]


def home_day(parsed: ParsedLines, tz: ZoneInfo) -> dt.date | None:
    """The day partition that owns a file's undatable or misplaced lines."""
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
    quarantined: list[pd.DataFrame] = []
    lines_read = other_days = 0
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
            quarantined.append(parsed.quarantine)
            if misplaced.any():
                moved = events.loc[misplaced, ["line_no"]].assign(
                    reason=np.where(absurd[misplaced], "absurd_timestamp", "outside_file_hour"),
                    source_file=parsed.source_file,
                    raw=_rows_as_text(events.loc[misplaced, list(_RAW_COLUMNS)]),
                )
                quarantined.append(moved[["reason", "source_file", "line_no", "raw"]])
        in_day = ~misplaced & (events["ts"] >= start) & (events["ts"] < end)
        if owns:
            other_days += int((~misplaced & ~in_day).sum())
        kept.append(events.loc[in_day].assign(source_file=parsed.source_file))

    events = (
        pd.concat(kept, ignore_index=True)
        if kept
        else pd.DataFrame(columns=[*_RAW_COLUMNS, "line_no", "source_file"])
    )
    # Deterministic order first, so "keep the first copy" means the same copy on every re-run.
    events = events.sort_values(["ts", "event_id", "line_no"], kind="stable")
    before = len(events)
    events = events.drop_duplicates("event_id", keep="first")
    duplicates = before - len(events)

    bad_rows: list[pd.DataFrame] = []
    agent = events["user_agent"].astype("string")
    is_bot = agent.str.contains(rules.bot_user_agent_pattern, case=False, regex=True).fillna(False)
    unknown = ~events["event_name"].isin(KNOWN_EVENTS)
    for reason, mask in (("bot", is_bot), ("unknown_event", unknown & ~is_bot)):
        if mask.any():
            rows = events.loc[mask]
            bad_rows.append(
                pd.DataFrame(
                    {
                        "reason": reason,
                        "source_file": rows["source_file"].astype("str"),
                        "line_no": rows["line_no"].astype("int64"),
                        "raw": _rows_as_text(rows[list(_RAW_COLUMNS)]),
                    }
                )
            )
    events = events.loc[~is_bot & ~unknown]

    article_id = article_ids(events.get("article_id"), events, rules)
    non_article = article_id.isna()
    non_article_events = int(non_article.sum())
    events = events.assign(article_id=article_id).loc[~non_article]

    parts = [frame for frame in (*quarantined, *bad_rows) if not frame.empty]
    quarantine = pd.concat(parts, ignore_index=True) if parts else _quarantine_frame([])
    quarantine = quarantine.sort_values(["source_file", "line_no", "reason"], kind="stable")
    quarantine.insert(0, schemas.DATE, day.isoformat())
    out = events.assign(date=day.isoformat())[list(schemas.EVENT_COLUMNS)]
    return DayEvents(
        events=out.reset_index(drop=True).astype(
            {name: "string" for name in schemas.EVENT_COLUMNS if name != "ts"}
        ),
        quarantine=quarantine.reset_index(drop=True),
        lines_read=lines_read,
        duplicates=duplicates,
        non_article_events=non_article_events,
        other_days=other_days,
        quarantined_by_reason=dict(Counter(quarantine["reason"])),
    )


def article_ids(given: pd.Series | None, events: pd.DataFrame, rules: EventRules) -> pd.Series:
    """The article id of each event: given by the source, else from the path by the site's regex.

    Paths under an excluded prefix (sections, authors, tags) are never articles.
    """
    paths = events["path"].astype("string")
    from_path = paths.str.extract(rules.article_id_pattern, expand=False).astype("string")
    if rules.excluded_path_prefixes:
        excluded = paths.str.startswith(tuple(rules.excluded_path_prefixes)).fillna(False)
        from_path = from_path.mask(excluded)
    if given is None:
        return from_path
    return given.astype("string").fillna(from_path)
