"""Event sources: where a site's landing files are and how each format is read.

Each source is small and named for what it reads; the site's YAML chooses one. They list landing
files (for the sensor), say which day partitions a file touches, and read whole days into the
canonical frames through ``core.events``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recs_pipeline.core.events import (
    FOLDER_SLACK,
    DayEvents,
    EventRules,
    ParsedLines,
    assemble_day,
    events_from_table,
    parse_snowplow_lines,
)
from recs_pipeline.core.site import EventSourceConfig, SiteConfig
from recs_pipeline.core.timeframe import day_bounds, day_of

_HOUR_FOLDER = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")


@dataclass(frozen=True)
class LandingFile:
    """A file in the landing area; (path, size, mtime) identify a delivery."""

    path: str
    size: int
    mtime: float


class EventSource(Protocol):
    """What the graph needs from a site's event source."""

    def list_files(self) -> list[LandingFile]: ...

    def days_of(self, file: LandingFile) -> set[dt.date]: ...

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]: ...


def _list(root: Path, pattern: str) -> list[LandingFile]:
    if not root.exists():
        return []
    files = []
    for path in sorted(root.glob(pattern)):
        if path.is_file() and not path.name.startswith(("_", ".")):
            stat = path.stat()
            files.append(LandingFile(str(path), stat.st_size, stat.st_mtime))
    return files


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _rules(config: EventSourceConfig) -> EventRules:
    return EventRules(
        article_id_pattern=config.article_id_pattern,
        excluded_path_prefixes=tuple(config.excluded_path_prefixes),
        bot_user_agent_pattern=config.bot_user_agent_pattern,
    )


class SnowplowEvents:
    """Snowplow enriched events: gzipped JSON lines in hourly UTC folders ``YYYY/MM/DD/HH/``."""

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo) -> None:
        self.config = config
        self.tz = tz
        self.root = config.resolved_location()
        self.rules = _rules(config)

    @staticmethod
    def hour_of(path: str) -> pd.Timestamp | None:
        match = _HOUR_FOLDER.search(Path(path).as_posix())
        if match is None:
            return None
        year, month, day, hour = (int(part) for part in match.groups())
        return pd.Timestamp(dt.datetime(year, month, day, hour, tzinfo=dt.UTC))

    def list_files(self) -> list[LandingFile]:
        return [f for f in _list(self.root, self.config.files) if self.hour_of(f.path) is not None]

    def days_of(self, file: LandingFile) -> set[dt.date]:
        hour = self.hour_of(file.path)
        if hour is None:
            return set()
        first = hour - FOLDER_SLACK
        last = hour + pd.Timedelta(hours=1) + FOLDER_SLACK - pd.Timedelta(milliseconds=1)
        return {day_of(first, self.tz), day_of(hour, self.tz), day_of(last, self.tz)}

    def files_for_day(self, day: dt.date) -> list[LandingFile]:
        start, end = day_bounds(day, self.tz)
        low = start - pd.Timedelta(hours=1) - FOLDER_SLACK
        high = end + FOLDER_SLACK
        chosen = []
        for file in self.list_files():
            hour = self.hour_of(file.path)
            if hour is not None and low < hour < high:
                chosen.append(file)
        return chosen

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]:
        cache: dict[str, ParsedLines] = {}
        for day in sorted(days):
            parsed = []
            for file in self.files_for_day(day):
                if file.path not in cache:
                    cache[file.path] = parse_snowplow_lines(
                        _read_bytes(file.path), self._relative(file.path), self.hour_of(file.path)
                    )
                parsed.append(cache[file.path])
            yield day, assemble_day(parsed, day, self.tz, self.rules, now=now)
            # Files of earlier days are not needed again (days are processed in order).
            horizon = day_bounds(day, self.tz)[1] - pd.Timedelta(hours=3)
            for path in [
                p for p, item in cache.items() if item.hour is not None and item.hour < horizon
            ]:
                del cache[path]

    def _relative(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return path


class CsvEvents:
    """Delimited files (optionally gzipped) with a column mapping from the site's YAML.

    The files carry no day in their names, so every day run reads all of them (once per run, even
    for a range of days) and keeps the rows of its days.
    """

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo, first_day: dt.date) -> None:
        if config.columns is None:
            raise ValueError("a csv event source needs a `columns` mapping")
        self.config = config
        self.columns = config.columns
        self.tz = tz
        self.first_day = first_day
        self.root = config.resolved_location()
        self.rules = _rules(config)

    def list_files(self) -> list[LandingFile]:
        return _list(self.root, self.config.files)

    def _mapping(self) -> dict[str, str]:
        """Source column name -> canonical name."""
        fields = {
            "user_id": self.columns.user_id,
            "article_id": self.columns.article_id,
            "ts": self.columns.timestamp,
            "event_id": self.columns.event_id,
            "path": self.columns.path,
            "event_name": self.columns.event_name,
            "referrer": self.columns.referrer,
            "user_agent": self.columns.user_agent,
        }
        return {source: canonical for canonical, source in fields.items() if source}

    def parse_file(self, file: LandingFile) -> ParsedLines:
        mapping = self._mapping()
        invalid: list[tuple[str, str, int, str]] = []
        name = self._relative(file.path)

        def on_invalid(row: pacsv.InvalidRow) -> str:
            number = row.number if row.number is not None else -1
            invalid.append(("malformed_row", name, number, (row.text or "")[:2000]))
            return "skip"

        table = pacsv.read_csv(
            file.path,
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=self.config.delimiter, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(mapping),
                column_types={source: pa.string() for source in mapping},
                include_missing_columns=False,
            ),
        )
        missing = [source for source in mapping if source not in table.column_names]
        if missing:
            raise ValueError(
                f"{file.path}: the site maps columns {missing} that the file does not have "
                f"(it has {table.column_names})"
            )
        frame = table.rename_columns([mapping[c] for c in table.column_names]).to_pandas(
            types_mapper=pd.ArrowDtype
        )
        frame = frame.astype({column: "string" for column in frame.columns})
        parsed = events_from_table(
            frame, name, self.config.timestamp_unit, self.config.timestamp_timezone
        )
        if invalid:
            extra = pd.DataFrame(invalid, columns=["reason", "source_file", "line_no", "raw"])
            parsed.quarantine = pd.concat([parsed.quarantine, extra], ignore_index=True)
            parsed.lines += len(invalid)
        return parsed

    def days_of(self, file: LandingFile) -> set[dt.date]:
        events = self.parse_file(file).events
        if events.empty:
            return {self.first_day}
        local = events["ts"].dt.tz_convert(self.tz)
        return set(local.dt.date.unique())

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]:
        parsed = [self.parse_file(file) for file in self.list_files()]
        for day in sorted(days):
            yield (
                day,
                assemble_day(
                    parsed, day, self.tz, self.rules, fallback_home=self.first_day, now=now
                ),
            )

    def _relative(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return path


def event_source(site: SiteConfig) -> EventSource:
    """The source a site's configuration names."""
    if site.events.format == "snowplow":
        return SnowplowEvents(site.events, site.tz)
    return CsvEvents(site.events, site.tz, site.start_date)
