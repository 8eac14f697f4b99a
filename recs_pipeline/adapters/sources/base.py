"""What every event source shares: the protocol, listing landing files, streaming reads.

Files are read through ``pyarrow.fs`` (``adapters.filesystems.resolve``), so a ``location`` may be
a folder or ``s3://bucket/prefix``. A file is decompressed as a stream (gzip, bzip2, zstd or lz4,
detected from its first bytes) and handed to the parsers in batches of lines, so memory depends on
the batch size and the day's canonical frame, never on the size of a file.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from recs_pipeline.adapters.filesystems import resolve
from recs_pipeline.core.events import (
    BATCH_LINES,
    MAX_LINE_BYTES,
    DayEvents,
    EventRules,
    ParsedLines,
    Pseudonymiser,
    compact,
    empty_raw,
    quarantine_frame,
)
from recs_pipeline.core.site import EventSourceConfig

T = TypeVar("T")

#: Bytes read from a stream at once.
CHUNK_BYTES = 4 << 20
#: A file that cannot be read and was modified this recently is taken as still being written
#: (left for the next run); older, it is quarantined as a whole.
SETTLE_SECONDS = 60.0
#: What a file that cannot be read at all raises (decompression, Parquet, I/O).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, pa.ArrowException, UnicodeError)

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x04\x22\x4d\x18": "lz4",
}


@dataclass(frozen=True)
class LandingFile:
    """A file in the landing area; (path, size, mtime) identify a delivery."""

    path: str
    size: int
    mtime: float


@dataclass
class FileProblems:
    """Landing files a source did not turn into events, for the run's metadata."""

    #: (path, size, error) of files quarantined whole (``unreadable_file``).
    unreadable: list[tuple[str, int, str]] = field(default_factory=list)
    #: Files whose size or modification time changed while read (left for the next run).
    in_flight: list[str] = field(default_factory=list)
    #: Files matching the glob but not the source's layout (no hour folder, no table date).
    outside_layout: list[str] = field(default_factory=list)


class EventSource(Protocol):
    """What the graph needs from a site's event source."""

    def list_files(self) -> list[LandingFile]: ...

    def days_of(self, file: LandingFile) -> set[dt.date]: ...

    def read_days(
        self, days: Sequence[dt.date], now: pd.Timestamp | None = None
    ) -> Iterator[tuple[dt.date, DayEvents]]: ...


def rules_of(config: EventSourceConfig, quarantine_unknown_events: bool = True) -> EventRules:
    return EventRules(
        article_id_pattern=config.article_id_pattern,
        excluded_path_prefixes=tuple(config.excluded_path_prefixes),
        bot_user_agent_pattern=config.bot_user_agent_pattern,
        excluded_path_patterns=tuple(
            (pattern, reason) for reason, pattern in sorted(config.excluded_path_patterns.items())
        ),
        hosts=tuple(config.hosts),
        significant_params=tuple(config.significant_params),
        quarantine_unknown_events=quarantine_unknown_events,
    )


def pseudonymiser_of(config: EventSourceConfig) -> Pseudonymiser | None:
    """The site's pseudonymiser, its salt read from the environment at the moment of reading."""
    if config.pseudonymise_salt_env is None:
        return None
    salt = os.environ.get(config.pseudonymise_salt_env)
    if not salt:
        raise RuntimeError(
            f"user ids are to be pseudonymised but {config.pseudonymise_salt_env} is not set"
        )
    return Pseudonymiser(salt)


class FileSource:
    """A landing area: listing files that match the site's glob, opening them decompressed."""

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo) -> None:
        self.config = config
        self.tz = tz
        self.fs, self.root = resolve(config.location)
        self._listing: list[LandingFile] | None = None
        #: Longest line read; longer ones are cut while reading and quarantined as oversized.
        self.max_line_bytes = MAX_LINE_BYTES
        #: Lines handed to a parser at once (1: each line parsed on its own, as a reference).
        self.batch_lines = BATCH_LINES
        #: How long a file must stay unchanged before it is taken as complete. An S3 object
        #: appears only once written whole (a PUT, or a multipart upload once completed).
        self.settle_seconds = 0.0 if isinstance(self.fs, pafs.S3FileSystem) else SETTLE_SECONDS
        self.problems = FileProblems()

    def check_location(self) -> None:
        """Raise, naming the location, when the landing area does not exist.

        An existing empty folder is fine (nothing landed yet). On S3 the bucket must exist; a
        prefix without objects is an empty folder (S3 has no folders of its own).
        """
        location = self.config.location
        if isinstance(self.fs, pafs.S3FileSystem):
            bucket = self.root.split("/", 1)[0]
            if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise FileNotFoundError(
                    f"landing area {location}: bucket {bucket!r} does not exist"
                )
            return
        kind = self.fs.get_file_info(self.root).type
        if kind == pafs.FileType.NotFound:
            raise FileNotFoundError(f"landing folder {location} ({self.root}) does not exist")
        if kind != pafs.FileType.Directory:
            raise NotADirectoryError(f"landing location {location} ({self.root}) is not a folder")

    def list_files(self) -> list[LandingFile]:
        self.check_location()
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        files = []
        others: list[str] = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            relative = self.relative(info.path)
            if any(part.startswith(("_", ".")) for part in relative.split("/")):
                continue
            if matches(relative, self.config.file_glob):
                mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
                files.append(LandingFile(info.path, int(info.size or 0), mtime))
            else:
                others.append(relative)
        if not files and others:
            # Files landed but the site's glob takes none of them: a misconfiguration that
            # would otherwise ingest 0 events and call it a success.
            raise FileNotFoundError(
                f"no file of landing folder {self.config.location} matches "
                f"events.files {self.config.file_glob!r}: {len(others)} other files there, "
                f"e.g. {sorted(others)[:3]}"
            )
        return sorted(files, key=lambda f: f.path)

    def listing(self) -> list[LandingFile]:
        """The files, listed once per run (a run over many days lists the area once)."""
        if self._listing is None:
            self._listing = self.list_files()
        return self._listing

    def relative(self, path: str) -> str:
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    def open(self, path: str) -> pa.NativeFile:
        return open_decompressed(self.fs, path, self.config.compression)

    def line_batches(self, path: str) -> Iterator[list[bytes]]:
        """The file's lines in batches, read and decompressed one batch ahead in a thread (the
        codecs release the GIL, so reading overlaps parsing on a second core)."""

        def batches() -> Iterator[list[bytes]]:
            with self.open(path) as stream:
                yield from iter_line_batches(
                    stream, batch_lines=self.batch_lines, max_line_bytes=self.max_line_bytes
                )

        return prefetch(batches())

    def changed(self, file: LandingFile) -> bool:
        """Whether the file's size or modification time differs from when it was listed."""
        info = self.fs.get_file_info(file.path)
        if info.type != pafs.FileType.File:
            return True
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        # Whole seconds: an S3 listing may give milliseconds where HEAD gives seconds (MinIO).
        return int(info.size or 0) != file.size or math.floor(mtime) != math.floor(file.mtime)

    def read_safely(self, file: LandingFile, parse: Callable[[], T]) -> T | ParsedLines | None:
        """``parse()``, or the whole file quarantined when it cannot be read; None when it is
        still being written (changed while read, or unreadable and modified within
        ``settle_seconds``): the next run reads it."""
        name = self.relative(file.path)
        try:
            parsed = parse()
        except READ_ERRORS as error:
            if is_transient(error):
                raise  # the storage, not the file: the run fails and is retried
            if self.changed(file) or time.time() - file.mtime < self.settle_seconds:
                self.problems.in_flight.append(name)
                return None
            message = f"{type(error).__name__}: {error}"
            self.problems.unreadable.append((name, file.size, message))
            return unreadable_file(name, file, message)
        if self.changed(file):
            self.problems.in_flight.append(name)
            return None
        return parsed


def is_transient(error: BaseException) -> bool:
    """An error of the storage or the network (S3 unreachable, throttled, credentials), which
    says nothing about the file's bytes."""
    return isinstance(error, ConnectionError | TimeoutError) or "AWS Error" in str(error)


def unreadable_file(name: str, file: LandingFile, message: str) -> ParsedLines:
    """A file that cannot be read, as one quarantined "line" (it counts as one line read)."""
    modified = dt.datetime.fromtimestamp(file.mtime, dt.UTC).isoformat(timespec="seconds")
    raw = f"{file.size} bytes, modified {modified}: {message}"[:2000]
    return ParsedLines(
        name,
        compact(empty_raw()),
        quarantine_frame([("unreadable_file", name, 0, raw)]),
        1,
        unreadable=True,
    )


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, produced by a thread up to ``depth`` items ahead of the consumer; an error
    of the producer is raised to the consumer at the item where it happened."""
    ahead: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ahead.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put((False, None))
        except BaseException as error:  # handed to the consumer, raised there
            ahead.put((False, error))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            more, value = ahead.get()
            if not more:
                if isinstance(value, BaseException):
                    raise value
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            try:
                ahead.get_nowait()
            except queue.Empty:
                worker.join(0.05)
        close = getattr(items, "close", None)
        if close is not None:
            close()


def drain(items: list[T]) -> Iterator[T]:
    """Hand items over one by one, dropping the list's reference to each (frees big frames)."""
    items.reverse()
    while items:
        yield items.pop()


def matches(relative: str, glob: str) -> bool:
    """Glob match of a path below the landing root; ``**/`` also matches no folder at all."""
    if fnmatch.fnmatchcase(relative, glob):
        return True
    return glob.startswith("**/") and fnmatch.fnmatchcase(relative, glob[3:])


def open_decompressed(fs: pafs.FileSystem, path: str, compression: str = "auto") -> pa.NativeFile:
    """An input stream of the file's bytes, decompressed (codec from its first bytes)."""
    if compression == "auto":
        with fs.open_input_file(path) as handle:
            head = handle.read(4)
        compression = next(
            (codec for magic, codec in _MAGIC.items() if head.startswith(magic)), "none"
        )
    return fs.open_input_stream(path, compression=None if compression == "none" else compression)


def iter_line_batches(
    stream: pa.NativeFile,
    batch_lines: int = BATCH_LINES,
    chunk_bytes: int = CHUNK_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[list[bytes]]:
    """Lines of a stream (without ``\\n``), in lists of at most ``batch_lines``.

    Line numbers stay exact: empty lines are kept (the parsers skip them), and the text after the
    last newline is the last line. A line longer than ``max_line_bytes`` is cut to its first
    ``max_line_bytes + 1`` bytes as it is read (the parsers quarantine it as oversized), so a
    line without an end never holds more than that and one chunk in memory.
    """
    pending: list[bytes] = []
    rest = b""
    limit = max_line_bytes + 1
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        pieces = bytes(chunk).split(b"\n")
        del chunk
        pieces[0] = rest + pieces[0] if rest else pieces[0]
        rest = pieces.pop()
        if len(rest) > limit:
            rest = rest[:limit]
        for position, piece in enumerate(pieces):
            if len(piece) > limit:
                pieces[position] = piece[:limit]
        pending.extend(pieces)
        while len(pending) >= batch_lines:
            yield pending[:batch_lines]
            pending = pending[batch_lines:]
    if rest:
        pending.append(rest)
    if pending:
        yield pending
