"""Sources whose files carry no day in their names (delimited click logs, MIND behaviours).

Every day run reads every file once per run (even for a range of days), keeps only the rows of
the run's days (plus implausible ones, which their home day quarantines) and assembles each day.
Memory is the run's own days, not the whole landing area.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

import pandas as pd

from recs_pipeline.adapters.sources.base import FileSource, LandingFile, drain
from recs_pipeline.core.events import (
    EARLIEST_PLAUSIBLE,
    DayEvents,
    EventRules,
    ParsedLines,
    assemble_day,
    quarantine_frame,
)
from recs_pipeline.core.site import EventSourceConfig
from recs_pipeline.core.timeframe import day_bounds


class TableFileSource(FileSource):
    """Shared reading of files that are tables of events of any days."""

    rules: EventRules

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo, first_day: dt.date) -> None:
        super().__init__(config, tz)
        self.first_day = first_day

    def parse_file(self, file: LandingFile) -> ParsedLines:
        raise NotImplementedError

    def read_file(self, file: LandingFile) -> ParsedLines | None:
        """``parse_file``, the file quarantined whole when unreadable, None while in flight."""
        return self.read_safely(file, lambda: self.parse_file(file))

    def read_files(self, files: Sequence[LandingFile]) -> list[ParsedLines | None]:
        """``read_file`` of each file (a source may read small files together)."""
        return [self.read_file(file) for file in files]

    def _home(self, parsed: ParsedLines, now: pd.Timestamp, file: LandingFile) -> dt.date:
        """The day of the file's earliest plausible event (its undatable lines' owner); for a
        file that cannot be read, the day it was last modified (not before the first day)."""
        if parsed.unreadable:
            modified = pd.Timestamp(file.mtime, unit="s", tz="UTC").tz_convert(self.tz).date()
            return max(modified, self.first_day)
        stamps = parsed.events["ts"]
        plausible = stamps[(stamps >= EARLIEST_PLAUSIBLE) & (stamps <= now + pd.Timedelta(days=1))]
        if plausible.empty:
            return self.first_day
        return pd.Timestamp(plausible.min()).tz_convert(self.tz).date()

    def days_of(self, file: LandingFile) -> set[dt.date]:
        parsed = self.read_file(file)
        if parsed is None:
            return set()  # still being written: seen again once it changes or settles
        local = parsed.events["ts"].dt.tz_convert(self.tz).dt.date
        return set(local.unique()) | {self._home(parsed, pd.Timestamp.now(tz="UTC"), file)}

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]:
        wanted = sorted(days)
        if not wanted:
            return
        moment = pd.Timestamp.now(tz="UTC") if now is None else now
        start, end = day_bounds(wanted[0], self.tz)[0], day_bounds(wanted[-1], self.tz)[1]
        parsed_files = []
        listing = self.listing()
        for file, read in zip(listing, self.read_files(listing), strict=True):
            if read is None:
                continue  # still being written: the next run reads it
            parsed = read
            parsed.home = self._home(parsed, moment, file)
            stamps = parsed.events["ts"]
            implausible = (stamps < EARLIEST_PLAUSIBLE) | (stamps > moment + pd.Timedelta(days=1))
            keep = ((stamps >= start) & (stamps < end)) | implausible
            if parsed.home not in wanted:
                keep &= ~implausible
                parsed.quarantine = quarantine_frame([])
            parsed.outside_run += int((~keep).sum())
            parsed.events = parsed.events.loc[keep].reset_index(drop=True)
            parsed_files.append(parsed)
        for position, day in enumerate(wanted):
            # The last day frees each file's rows as it copies them (all of a one-day run).
            files = drain(parsed_files) if position == len(wanted) - 1 else parsed_files
            yield day, assemble_day(files, day, self.tz, self.rules, now=moment)
