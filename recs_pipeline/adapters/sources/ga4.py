"""Google Analytics 4 export: the ``events_YYYYMMDD`` tables as JSON lines or Parquet.

BigQuery exports each day as ``events_YYYYMMDD`` (a file, or a folder of shards) and the running
day as ``events_intraday_YYYYMMDD``; once the daily table exists it supersedes the intraday one.
The table's date is a day of the property's reporting time zone: set the site's ``timezone`` to
it, so a day partition reads exactly one table. Read: ``event_timestamp`` (µs), ``event_name``,
``user_pseudo_id`` and the event parameters ``page_location``, ``page_referrer`` and
``engagement_time_msec`` (dwell comes from engagement time, not heartbeats).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recs_pipeline.adapters.sources.base import (
    FileSource,
    LandingFile,
    drain,
    pseudonymiser_of,
    rules_of,
)
from recs_pipeline.core.events import (
    BATCH_LINES,
    GA4_PARAMS,
    DayEvents,
    ParsedLines,
    assemble_day,
    concat_events,
    ga4_events,
    parse_ga4_lines,
    quarantine_frame,
    string_series,
)
from recs_pipeline.core.site import EventSourceConfig

_TABLE = re.compile(r"events_(intraday_)?(\d{8})")
#: Columns a GA4 Parquet file must have, and what their types must be.
REQUIRED = {
    "event_timestamp": pa.types.is_integer,
    "event_name": pa.types.is_string,
    "user_pseudo_id": pa.types.is_string,
    "event_params": lambda t: (
        pa.types.is_list(t)
        and pa.types.is_struct(t.value_type)
        and {"key", "value"} <= {f.name for f in t.value_type}
    ),
}


def table_of(path: str) -> tuple[dt.date, bool] | None:
    """The table date and whether it is an intraday table, from a file's path."""
    matches = list(_TABLE.finditer(path))
    if not matches:
        return None
    intraday, digits = matches[-1].groups()
    try:
        return dt.datetime.strptime(digits, "%Y%m%d").date(), intraday is not None
    except ValueError:
        return None


class Ga4Events(FileSource):
    """GA4 export tables, one day partition per table."""

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo) -> None:
        super().__init__(config, tz)
        self.rules = rules_of(config, quarantine_unknown_events=False)

    def list_files(self) -> list[LandingFile]:
        files = super().list_files()
        dated = [f for f in files if table_of(self.relative(f.path)) is not None]
        self.problems.outside_layout = [
            self.relative(f.path) for f in files if table_of(self.relative(f.path)) is None
        ]
        return dated

    def days_of(self, file: LandingFile) -> set[dt.date]:
        table = table_of(self.relative(file.path))
        return {table[0]} if table else set()

    def files_for_day(self, day: dt.date) -> list[LandingFile]:
        daily, intraday = self.tables_of_day(day)
        return daily or intraday

    def tables_of_day(self, day: dt.date) -> tuple[list[LandingFile], list[LandingFile]]:
        """The day's daily and intraday table files."""
        daily: list[LandingFile] = []
        intraday: list[LandingFile] = []
        for file in self.listing():
            table = table_of(self.relative(file.path))
            if table is not None and table[0] == day:
                (intraday if table[1] else daily).append(file)
        return daily, intraday

    def parse_file(self, file: LandingFile, day: dt.date) -> ParsedLines | None:
        """The table file's rows; quarantined whole when unreadable; None while in flight."""
        name = self.relative(file.path)
        users = pseudonymiser_of(self.config)

        def parse() -> ParsedLines:
            if file.path.endswith(".parquet"):
                return self._parse_parquet(file.path, name, users)
            return parse_ga4_lines(
                self.line_batches(file.path),
                name,
                home=day,
                users=users,
                max_line_bytes=self.max_line_bytes,
            )

        parsed = self.read_safely(file, parse)
        if parsed is not None:
            parsed.home = day
        return parsed

    def _parse_parquet(self, path: str, name: str, users: object) -> ParsedLines:
        with self.fs.open_input_file(path) as handle:
            reader = pq.ParquetFile(handle)
            schema = reader.schema_arrow
            wrong = [
                column
                for column, check in REQUIRED.items()
                if column not in schema.names or not check(schema.field(column).type)
            ]
            if wrong:
                rows = reader.metadata.num_rows
                return ParsedLines(
                    name,
                    ga4_events(_empty_rows(), name).events,
                    quarantine_frame(
                        [("schema_mismatch", name, 0, f"{rows} rows; bad columns {wrong}")]
                    ),
                    1,
                )
            parts = []
            first = 1
            for batch in reader.iter_batches(batch_size=BATCH_LINES, columns=list(REQUIRED)):
                rows_frame = _batch_rows(batch, first)
                first += batch.num_rows
                parts.append(ga4_events(rows_frame, name, users))  # type: ignore[arg-type]
        events = [p.events for p in parts if not p.events.empty]
        quarantine = [p.quarantine for p in parts if not p.quarantine.empty]
        return ParsedLines(
            name,
            concat_events(events) if events else ga4_events(_empty_rows(), name).events,
            pd.concat(quarantine, ignore_index=True) if quarantine else quarantine_frame([]),
            sum(p.lines for p in parts),
            ignored=sum(p.ignored for p in parts),
        )

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]:
        for day in sorted(days):
            daily, intraday = self.tables_of_day(day)
            parsed = [item for file in daily or intraday if (item := self.parse_file(file, day))]
            if daily and intraday and any(item.unreadable for item in parsed):
                # A shard of the daily table cannot be read: the intraday table still holds its
                # events (the same rows get the same ids, so the overlap is de-duplicated).
                parsed += [
                    item for file in intraday if (item := self.parse_file(file, day)) is not None
                ]
            yield day, assemble_day(drain(parsed), day, self.tz, self.rules, now=now)


def _empty_rows() -> pd.DataFrame:
    frame = pd.DataFrame(
        {name: pd.Series(dtype="string") for name in ("ts", "event_name", "user_id", "path")}
    )
    frame["referrer"] = pd.Series(dtype="string")
    frame["engaged_ms"] = pd.Series(dtype="int64")
    frame["line_no"] = pd.Series(dtype="int64")
    return frame


def _param(params: pa.Array, n: int, key: str) -> pd.Series:
    """One event parameter's value per row (null where the row does not have it)."""
    flat = pc.list_flatten(params)
    parents = pc.list_parent_indices(params)
    mask = pc.equal(pc.struct_field(flat, "key"), key)
    value = pc.struct_field(flat, "value")
    wanted = GA4_PARAMS[key]
    fields = [f.name for f in value.type]
    chosen = wanted if wanted in fields else next(iter(fields), None)
    if chosen is None:
        return pd.Series([None] * n, dtype="object")
    values = pc.filter(pc.struct_field(value, chosen), mask).to_pandas()
    rows = pc.filter(parents, mask).to_numpy()
    series = pd.Series(values.to_numpy(), index=rows)
    series = series[~series.index.duplicated(keep="last")]
    return series.reindex(np.arange(n))


def _batch_rows(batch: pa.RecordBatch, first: int) -> pd.DataFrame:
    n = batch.num_rows
    params = batch.column("event_params")
    if isinstance(params, pa.ChunkedArray):
        params = params.combine_chunks()
    engaged = pd.to_numeric(_param(params, n, "engagement_time_msec"), errors="coerce")
    return pd.DataFrame(
        {
            # By Arrow: the digits of each integer and the strings, without Python objects.
            "ts": string_series(pc.cast(batch.column("event_timestamp"), pa.string())),
            "event_name": string_series(batch.column("event_name")),
            "user_id": string_series(batch.column("user_pseudo_id")),
            "path": _param(params, n, "page_location").astype("string"),
            "referrer": _param(params, n, "page_referrer").astype("string"),
            "engaged_ms": engaged.fillna(0).astype("int64"),
            "line_no": np.arange(first, first + n, dtype="int64"),
        }
    )
