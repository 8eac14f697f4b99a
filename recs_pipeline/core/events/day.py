"""A day partition: its events kept, de-duplicated, classified; what it owns quarantined."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recs_pipeline.core import schemas
from recs_pipeline.core.events.common import (
    _QUARANTINE,
    _RAW_COLUMNS,
    EARLIEST_PLAUSIBLE,
    FOLDER_SLACK,
    KNOWN_EVENTS,
    DayEvents,
    EventRules,
    ParsedLines,
    _empty_raw,
    _rows_as_text,
    as_strings,
    compact,
    concat_events,
    quarantine_frame,
)
from recs_pipeline.core.timeframe import day_bounds
from recs_pipeline.core.urls import classify


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
    events = events.take(event_order(events)).reset_index(drop=True)
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
    out = out.reset_index(drop=True)
    for name in schemas.EVENT_COLUMNS:
        if name not in ("ts", "engaged_ms"):
            out[name] = as_strings(out[name])
    return DayEvents(
        events=out.astype({"engaged_ms": "int64"}),
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


def event_order(events: pd.DataFrame) -> np.ndarray:
    """Positions of ``events`` by (ts, event_id, line_no), ties in frame order: the order of
    ``sort_values([...], kind="stable")``, computed by Arrow's stable sort (pandas factorises
    every event id first)."""
    keys = pa.table(
        {
            "ts": pa.array(events["ts"].array.asi8),
            "event_id": pa.array(events["event_id"].astype("string").array),
            "line_no": pa.array(events["line_no"].to_numpy()),
        }
    )
    order = pc.sort_indices(
        keys, sort_keys=[("ts", "ascending"), ("event_id", "ascending"), ("line_no", "ascending")]
    )
    return np.asarray(order.to_numpy(), dtype=np.int64)
