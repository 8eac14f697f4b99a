"""Snowplow enriched events: gzipped JSON lines in hourly UTC folders ``YYYY/MM/DD/HH/``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

import pandas as pd

from recs_pipeline.adapters.sources.base import (
    FileSource,
    LandingFile,
    drain,
    pseudonymiser_of,
    rules_of,
)
from recs_pipeline.core.events import (
    FOLDER_SLACK,
    DayEvents,
    ParsedLines,
    assemble_day,
    parse_snowplow_fast,
    parse_snowplow_group,
    parse_snowplow_lines,
)
from recs_pipeline.core.site import EventSourceConfig
from recs_pipeline.core.timeframe import day_bounds, day_of

#: Files up to this size (as stored, usually gzipped: some ten thousand lines) are parsed
#: together with the next ones (``SnowplowEvents.parse_files``).
SMALL_FILE_BYTES = 1 << 20
_HOUR_FOLDER = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")


class SnowplowEvents(FileSource):
    """``page_view`` and ``page_ping`` events (dwell = pings x the site's heartbeat interval).

    A file belongs to the hour of its folder; a day reads the hours of the day plus a little slack
    on each side (collectors deliver late), and a run over consecutive days parses each file once.
    """

    #: Column-wise validation (``parse_snowplow_fast``); False: line by line, the reference.
    fast = True

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo) -> None:
        super().__init__(config, tz)
        self.rules = rules_of(config)

    @staticmethod
    def hour_of(path: str) -> pd.Timestamp | None:
        match = _HOUR_FOLDER.search(path)
        if match is None:
            return None
        year, month, day, hour = (int(part) for part in match.groups())
        try:
            return pd.Timestamp(dt.datetime(year, month, day, hour, tzinfo=dt.UTC))
        except ValueError:
            return None

    def list_files(self) -> list[LandingFile]:
        files = super().list_files()
        self.problems.outside_layout = [
            self.relative(f.path) for f in files if self.hour_of(f.path) is None
        ]
        return [f for f in files if self.hour_of(f.path) is not None]

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
        for file in self.listing():
            hour = self.hour_of(file.path)
            if hour is not None and low < hour < high:
                chosen.append(file)
        return chosen

    def parse_file(self, file: LandingFile) -> ParsedLines | None:
        """The file's lines; the file quarantined whole when unreadable; None while in flight."""
        users = pseudonymiser_of(self.config)
        parsed = self.read_safely(
            file,
            lambda: (parse_snowplow_fast if self.fast else parse_snowplow_lines)(
                self.line_batches(file.path),
                self.relative(file.path),
                self.hour_of(file.path),
                users=users,
                bot_user_agent_pattern=self.config.bot_user_agent_pattern,
                max_line_bytes=self.max_line_bytes,
            ),
        )
        if parsed is not None and parsed.unreadable:
            parsed.hour = self.hour_of(file.path)  # its hour's day owns it
        return parsed

    def parse_files(self, files: Sequence[LandingFile]) -> dict[str, ParsedLines | None]:
        """``parse_file`` of each file; small files are parsed together, up to a batch of lines
        at once (``parse_snowplow_group``), so they cost no more per line than big ones."""
        out: dict[str, ParsedLines | None] = {}
        group: list[tuple[LandingFile, list[bytes]]] = []
        lines_in_group = 0

        def flush() -> None:
            if not group:
                return
            results = parse_snowplow_group(
                [(self.relative(f.path), lines) for f, lines in group],
                users=pseudonymiser_of(self.config),
                bot_user_agent_pattern=self.config.bot_user_agent_pattern,
                max_line_bytes=self.max_line_bytes,
            )
            for (f, _), parsed in zip(group, results, strict=True):
                parsed.hour = self.hour_of(f.path)
                out[f.path] = parsed
            group.clear()

        for file in files:
            if not self.fast or file.size > SMALL_FILE_BYTES:
                out[file.path] = self.parse_file(file)
                continue
            read = self.read_safely(file, lambda f=file: self._lines(f))  # type: ignore[misc]
            if read is None or isinstance(read, ParsedLines):
                if read is not None:
                    read.hour = self.hour_of(file.path)  # unreadable: its hour's day owns it
                out[file.path] = read
                continue
            group.append((file, read))
            lines_in_group += len(read)
            if lines_in_group >= self.batch_lines:
                flush()
                lines_in_group = 0
        flush()
        return out

    def _lines(self, file: LandingFile) -> list[bytes]:
        return [line for batch in self.line_batches(file.path) for line in batch]

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]:
        """Days in order; a file that the next day also needs is parsed once and kept."""
        wanted = sorted(days)
        cache: dict[str, ParsedLines] = {}
        for position, day in enumerate(wanted):
            upcoming = wanted[position + 1] if position + 1 < len(wanted) else None
            keep = {f.path for f in self.files_for_day(upcoming)} if upcoming else set()
            files = self.files_for_day(day)
            fresh = self.parse_files([f for f in files if f.path not in cache])
            parsed = []
            for file in files:
                item = cache.pop(file.path) if file.path in cache else fresh.pop(file.path)
                if item is None:
                    continue  # still being written: the next run reads it
                if file.path in keep:
                    cache[file.path] = item
                parsed.append(item)
            del fresh
            yield day, assemble_day(drain(parsed), day, self.tz, self.rules, now=now)
