"""Delimited click logs with a column mapping (CSV, TSV; any compression; header variants)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recs_pipeline.adapters.sources.base import LandingFile, pseudonymiser_of, rules_of
from recs_pipeline.adapters.sources.tables import TableFileSource
from recs_pipeline.core.events import (
    QUARANTINE_RAW_CHARS,
    ParsedLines,
    QuarantineRow,
    events_from_table,
    quarantine_frame,
    string_series,
)
from recs_pipeline.core.site import CsvColumns, EventSourceConfig

_HEADER_BYTES = 1 << 16
_BLOCK_BYTES = 1 << 22


def normalise_name(name: str) -> str:
    """Header names match ignoring a byte-order mark, surrounding spaces, quotes and case."""
    return name.replace("\ufeff", "").strip().strip('"').strip().lower()


class CsvEvents(TableFileSource):
    """Delimited files with a column mapping from the site's YAML.

    Timestamps are numbers in a unit (s, ms, us, ns), ISO 8601 text or a strftime format, in a
    declared time zone when they carry no offset. Files may be gzip, bzip2, zstd or lz4 (detected),
    with a header (matched leniently) or without one (``column_names``). Rows are read in
    blocks, never a whole file at once; rows that do not parse (wrong number of fields, bytes
    that are not UTF-8) are quarantined, never fatal.
    """

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo, first_day: dt.date) -> None:
        if config.columns is None:
            raise ValueError("a csv event source needs a `columns` mapping")
        super().__init__(config, tz, first_day)
        self.columns: CsvColumns = config.columns
        self.rules = rules_of(config)

    def _mapping(self) -> dict[str, str]:
        """Source column name (normalised) -> canonical name."""
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
        return {normalise_name(source): canonical for canonical, source in fields.items() if source}

    def _header(self, path: str) -> list[str]:
        if not self.config.header:
            return list(self.config.column_names or ())
        with self.open(path) as stream:
            head = bytes(stream.read(_HEADER_BYTES))
        lines = head.decode("utf-8", errors="replace").splitlines()
        if len(lines) <= self.config.skip_rows:
            return []
        row = next(csv.reader(io.StringIO(lines[self.config.skip_rows]), delimiter=self.delimiter))
        return [normalise_name(name) for name in row]

    @property
    def delimiter(self) -> str:
        return "\t" if self.config.delimiter in ("\\t", "tab") else self.config.delimiter

    def parse_file(self, file: LandingFile) -> ParsedLines:
        rows = self._rows(file)
        return rows if isinstance(rows, ParsedLines) else self._validate([rows])[0]

    def read_files(self, files: Sequence[LandingFile]) -> list[ParsedLines | None]:
        """Each file's rows; small files (up to ``SMALL_FILE_BYTES``) read on their own and
        validated together, a batch of rows at once, so a small file costs no more per line
        than a big one (``events_from_table`` has a fixed cost per call)."""
        out: dict[int, ParsedLines | None] = {}
        group: list[tuple[int, _Rows]] = []
        rows_in_group = 0

        def flush() -> None:
            for (index, _), parsed in zip(
                group, self._validate([rows for _, rows in group]), strict=True
            ):
                out[index] = parsed
            group.clear()

        for index, file in enumerate(files):
            if file.size > SMALL_FILE_BYTES:
                out[index] = self.read_file(file)
                continue
            read = self.read_safely(file, lambda f=file: self._rows(f))  # type: ignore[misc]
            if read is None or isinstance(read, ParsedLines):
                out[index] = read
                continue
            group.append((index, read))
            rows_in_group += read.rows
            if rows_in_group >= self.batch_lines:
                flush()
                rows_in_group = 0
        flush()
        return [out[index] for index in range(len(files))]

    def _rows(self, file: LandingFile) -> _Rows | ParsedLines:
        """The file's rows, not yet validated (its header not matching: one quarantined line)."""
        name = self.relative(file.path)
        mapping = self._mapping()
        names = _unique(self._header(file.path))
        missing = sorted(set(mapping) - set(names))
        if missing:
            return ParsedLines(
                name,
                _no_events(),
                quarantine_frame(
                    [("schema_mismatch", name, 1, f"no columns {missing}; has {names}"[:2000])]
                ),
                1,
            )
        first_line = self.config.skip_rows + (2 if self.config.header else 1)
        read = _Rows(name)
        for frame, numbers, not_utf8 in delimited_rows(
            self.line_batches(file.path),
            name,
            names,
            mapping,
            self.delimiter,
            quote=True,
            first_line=first_line,
            max_line_bytes=self.max_line_bytes,
            bad=read.bad,
        ):
            read.rows += len(frame)
            read.bad += [("not_utf8", name, int(numbers[i]), text) for i, text in not_utf8.items()]
            good = np.ones(len(frame), dtype=bool)
            good[list(not_utf8)] = False
            read.frames.append(frame.loc[good])
            read.numbers.append(numbers[good])
        return read

    def _validate(self, files: list[_Rows]) -> list[ParsedLines]:
        """The files' rows validated by one ``events_from_table`` call, then split per file:
        each file's line numbers are shifted into a range of their own for the call."""
        users = pseudonymiser_of(self.config)
        frames = [frame for read in files for frame in read.frames]
        numbers = [
            part + index * _FILE_STRIDE for index, read in enumerate(files) for part in read.numbers
        ]
        whole = events_from_table(
            pd.concat(frames, ignore_index=True) if frames else _no_rows(),
            "",
            self.config.timestamp_unit,
            self.config.timestamp_timezone,
            users=users,
            timestamp_format=self.config.timestamp_format,
            bot_user_agent_pattern=self.config.bot_user_agent_pattern,
            line_numbers=np.concatenate(numbers) if numbers else np.zeros(0, dtype="int64"),
        )
        bounds = np.arange(len(files) + 1, dtype=np.int64) * _FILE_STRIDE
        event_cuts = np.searchsorted(whole.events["line_no"].to_numpy(), bounds)
        bad_cuts = np.searchsorted(whole.quarantine["line_no"].to_numpy(), bounds)
        out = []
        for index, read in enumerate(files):
            events = whole.events.iloc[event_cuts[index] : event_cuts[index + 1]]
            events = events.reset_index(drop=True)
            events["line_no"] -= index * _FILE_STRIDE
            quarantine = whole.quarantine.iloc[bad_cuts[index] : bad_cuts[index + 1]]
            quarantine = quarantine.reset_index(drop=True)
            quarantine["line_no"] -= index * _FILE_STRIDE
            quarantine["source_file"] = read.name
            if read.bad:
                extra = quarantine_frame(read.bad)
                if users is not None:
                    extra["raw"] = extra["raw"].map(users.redact)
                quarantine = pd.concat([quarantine, extra], ignore_index=True)
            out.append(
                ParsedLines(
                    read.name,
                    events if len(events) else _no_events(),
                    quarantine.astype({"source_file": "str"}),
                    read.rows + sum(1 for row in read.bad if row[0] != "not_utf8"),
                )
            )
        return out


#: Files up to this size (as stored) are validated together with the next ones.
SMALL_FILE_BYTES = 1 << 20
#: Line numbers of the files validated together are shifted by multiples of this.
_FILE_STRIDE = 1 << 40


@dataclass
class _Rows:
    """A delimited file's rows as read, before validation."""

    name: str
    frames: list[pd.DataFrame] = field(default_factory=list)
    numbers: list[np.ndarray] = field(default_factory=list)
    #: Lines refused while reading (malformed, oversized, not UTF-8), raw text not redacted.
    bad: list[QuarantineRow] = field(default_factory=list)
    #: Rows read (every line but the malformed ones: those are counted from ``bad``).
    rows: int = 0


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [], "ts": [], "article_id": []}, dtype="string")


def delimited_rows(
    batches: Iterable[list[bytes]],
    source_file: str,
    names: list[str],
    columns: dict[str, str],
    delimiter: str,
    *,
    quote: bool,
    first_line: int,
    max_line_bytes: int,
    bad: list[QuarantineRow],
) -> Iterator[tuple[pd.DataFrame, np.ndarray, dict[int, str]]]:
    """Rows of a delimited file, one per line: (the ``columns`` of ``names`` renamed source ->
    canonical, as strings; each row's line number; positions of rows that are not UTF-8 with
    their text).

    Lines before ``first_line`` (preamble, header) and empty lines are skipped. Every other line
    is one row, judged on its own, so nothing one line holds can spoil the next ones: a line
    longer than ``max_line_bytes`` is ``oversized``; a line with an unbalanced quote, a carriage
    return inside it or the wrong number of fields is ``malformed_row`` (quoted newlines are
    not supported: a record is a line). Rejected lines go to ``bad``.
    """
    include = list(columns)
    number = 0
    for batch in batches:
        if number + 1 < first_line:  # preamble and header
            skip = min(len(batch), first_line - number - 1)
            batch, number = batch[skip:], number + skip
            if not batch:
                continue
        first = number + 1
        number += len(batch)
        data = b"\n".join(batch) + b"\n"
        # Lines that need a look of their own (most batches have none): found with one cheap
        # test per line, then judged one by one.
        lengths = list(map(len, batch))
        suspects: set[int] = set()
        if min(lengths) == 0 or any(map(bytes.isspace, batch)):
            suspects.update(i for i, line in enumerate(batch) if not line.strip())
        if max(lengths) > max_line_bytes:
            suspects.update(i for i, size in enumerate(lengths) if size > max_line_bytes)
        if b"\r" in data:
            suspects.update(i for i, line in enumerate(batch) if b"\r" in line)
        if quote and b'"' in data:
            suspects.update(i for i, line in enumerate(batch) if b'"' in line)
        kept: list[bytes] = batch
        kept_numbers: list[int] | range = range(first, number + 1)
        if suspects:
            fixed: dict[int, bytes] = {}
            dropped: set[int] = set()
            for i in sorted(suspects):
                line = batch[i]
                if not line.strip():
                    dropped.add(i)  # an empty line is no line
                    continue
                if len(line) > max_line_bytes:
                    bad.append(("oversized", source_file, first + i, _raw(line)))
                    dropped.add(i)
                    continue
                if line.endswith(b"\r"):
                    line = fixed[i] = line[:-1]
                if b"\r" in line or (quote and line.count(b'"') % 2):
                    bad.append(("malformed_row", source_file, first + i, _raw(line)))
                    dropped.add(i)
            kept = [fixed.get(i, line) for i, line in enumerate(batch) if i not in dropped]
            kept_numbers = [first + i for i in range(len(batch)) if i not in dropped]
            data = b"\n".join(kept) + b"\n"
        if not kept:
            continue
        parsed = _parse(kept, names, delimiter, quote, include)
        if parsed is None and quote:
            # Even quote counts can still open a field that never closes (``1","``) and
            # swallow the next lines: find the lines that do not parse as one row on their own.
            unsound = {
                i
                for i, line in enumerate(kept)
                if b'"' in line and not _one_row(line, names, delimiter, include)
            }
            for i in sorted(unsound):
                bad.append(("malformed_row", source_file, int(kept_numbers[i]), _raw(kept[i])))
            kept = [line for i, line in enumerate(kept) if i not in unsound]
            kept_numbers = [n for i, n in enumerate(kept_numbers) if i not in unsound]
            if not kept:
                continue
            parsed = _parse(kept, names, delimiter, quote, include)
        if parsed is None:
            raise RuntimeError(f"{source_file}: the CSV reader lost track of line numbers")
        table, skipped = parsed
        numbers = np.asarray(kept_numbers, dtype="int64")
        for position in skipped:
            bad.append(("malformed_row", source_file, int(numbers[position]), _raw(kept[position])))
        numbers = np.delete(numbers, skipped)
        if table.num_rows == 0:
            continue
        record = table.combine_chunks().to_batches()[0]
        frame, not_utf8 = _decode(record, [columns[c] for c in record.schema.names])
        yield frame, numbers, not_utf8


def _parse(
    lines: list[bytes], names: list[str], delimiter: str, quote: bool, include: list[str]
) -> tuple[pa.Table, list[int]] | None:
    """The rows of some lines and the positions of the lines the reader skipped as invalid;
    None when rows and lines no longer match one to one (a quote that spans lines)."""
    data = b"\n".join(lines) + b"\n"
    skipped: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        skipped.append(-1 if row.number is None else row.number - 1)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=len(data) + 1, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quote else False,
                invalid_row_handler=on_invalid,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=include,
                column_types={source: pa.binary() for source in include},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if -1 in skipped or len(skipped) + table.num_rows != len(lines):
        return None
    return table, skipped


def _one_row(line: bytes, names: list[str], delimiter: str, include: list[str]) -> bool:
    parsed = _parse([line], names, delimiter, True, include)
    return parsed is not None and parsed[0].num_rows == 1


def _raw(line: bytes) -> str:
    return line[:QUARANTINE_RAW_CHARS].decode("utf-8", errors="backslashreplace")


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        out.append(name if count == 0 else f"{name}.{count}")
        seen[name] = count + 1
    return out


def _decode(batch: pa.RecordBatch, canonical: list[str]) -> tuple[pd.DataFrame, dict[int, str]]:
    """String columns from a batch of byte columns; rows with bytes that are not UTF-8 apart."""
    columns: dict[str, pd.Series] = {}
    not_utf8: dict[int, str] = {}
    for column, target in zip(batch.columns, canonical, strict=True):
        try:
            text = column.cast(pa.string())
        except pa.ArrowInvalid:
            values = column.to_pylist()
            decoded = []
            for i, value in enumerate(values):
                try:
                    decoded.append(None if value is None else value.decode("utf-8"))
                except UnicodeDecodeError:
                    decoded.append(None)
                    not_utf8[i] = value[:QUARANTINE_RAW_CHARS].decode("utf-8", "backslashreplace")
            text = pa.array(decoded, type=pa.string())
        columns[target] = string_series(text)
    return pd.DataFrame(columns), not_utf8


def _no_events() -> pd.DataFrame:
    return events_from_table(
        pd.DataFrame({"user_id": [], "ts": [], "article_id": []}, dtype="string"), "", "ms"
    ).events
