"""The published lists as the API serves them: one site's current versions, loaded as a whole.

A ``Snapshot`` holds one site's current ``user``, ``article`` and ``popular`` versions and its
article catalogue, read inside one read transaction (SQLite's WAL snapshot, Postgres' repeatable
read), so it never mixes two publishes. ``SnapshotHolder`` keeps the newest good snapshot behind
one reference: a background thread polls the ``model`` table every few seconds, loads a new
snapshot when the current model ids change and swaps the reference; while the database is
unreachable it keeps the last good one and says so (``/readyz``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import psycopg

from recs_pipeline.adapters.publishing import MODEL_TYPES, POPULAR_SOURCE, is_postgres_url
from recs_pipeline.adapters.publishing.base import _parse_ts
from recs_pipeline.adapters.publishing.postgres import libpq_url, redact_url
from recs_pipeline.serving.session_ranker import (
    SESSION_RANKER_PARAM,
    SessionRanker,
    session_ranker_from_document,
)

log = logging.getLogger(__name__)

#: How many catalogue articles (newest last_seen first) a snapshot keeps as the last fallback.
CATALOGUE_SIZE: Final = 2_000


@dataclass(frozen=True)
class ModelLists:
    """One published version's lists: source entity -> ``[(article_id, score)]`` in rank order."""

    model_id: int
    model_type: str
    as_of: dt.datetime
    index: dict[str, tuple[int, int]]
    #: Interned ids (one string object per distinct article) and packed doubles: about 16 bytes
    #: a row besides the index.
    articles: list[str]
    scores: array[float]

    def get(self, entity: str, limit: int | None = None) -> list[tuple[str, float]]:
        span = self.index.get(entity)
        if span is None:
            return []
        start, end = span
        if limit is not None:
            end = min(end, start + limit)
        return list(zip(self.articles[start:end], self.scores[start:end], strict=True))

    def __len__(self) -> int:
        return len(self.articles)


def model_lists(
    model_id: int, model_type: str, as_of: dt.datetime, rows: Iterable[Sequence[Any]]
) -> ModelLists:
    """Build from rows ``(source_entity_id, recommended_article_id, score)`` in key order."""
    index: dict[str, tuple[int, int]] = {}
    interned: dict[str, str] = {}
    articles: list[str] = []
    scores = array("d")
    current: str | None = None
    start = 0
    for position, (entity, article, score) in enumerate(rows):
        if entity != current:
            if current is not None:
                index[current] = (start, position)
            current, start = str(entity), position
        articles.append(interned.setdefault(article, str(article)))
        scores.append(float(score))
    if current is not None:
        index[current] = (start, len(articles))
    return ModelLists(model_id, model_type, as_of, index, articles, scores)


@dataclass(frozen=True)
class Snapshot:
    """One site's current published versions and catalogue, read in one transaction."""

    site: str
    models: dict[str, ModelLists]
    #: Articles of the registry, newest ``last_seen`` first (at most ``CATALOGUE_SIZE``).
    catalogue: list[str]
    #: ``Reader.current_ids`` as of this snapshot's transaction.
    stamp: tuple[tuple[str, int, str], ...] = ()
    loaded_at: float = field(default_factory=time.time)
    #: The session ranker published in the user version's ``params`` (the popular version's
    #: when there is no user version), if any: requests are scored by it; without, the blend.
    session_ranker: SessionRanker | None = None

    @property
    def key(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted((t, m.model_id) for t, m in self.models.items()))

    def personal(self, user_id: str, limit: int) -> list[tuple[str, float]]:
        model = self.models.get("user")
        return [] if model is None else model.get(user_id, limit)

    def similar(self, article_id: str, limit: int) -> list[tuple[str, float]]:
        model = self.models.get("article")
        return [] if model is None else model.get(article_id, limit)

    def popular(self, limit: int | None = None) -> list[tuple[str, float]]:
        model = self.models.get("popular")
        return [] if model is None else model.get(POPULAR_SOURCE, limit)

    @property
    def as_of(self) -> dt.datetime | None:
        stamps = [m.as_of for m in self.models.values()]
        return max(stamps) if stamps else None


EMPTY_MODELS: Final[dict[str, ModelLists]] = {}


class Reader(Protocol):
    """Reads a site's current version ids, and a whole snapshot, from a serving database."""

    def current_ids(self, site: str) -> tuple[tuple[str, int, str], ...]: ...

    def load(self, site: str) -> Snapshot: ...


_CURRENT: Final = (
    "SELECT type, id, as_of, finished_at FROM model WHERE site = {p} AND status = 'current'"
)
_PARAMS: Final = "SELECT params FROM model WHERE id = {p}"
_ROWS: Final = (
    "SELECT source_entity_id, recommended_article_id, score FROM recommendation "
    "WHERE model_id = {p} ORDER BY source_entity_id, rank"
)
_CATALOGUE: Final = (
    "SELECT article_id FROM article WHERE site = {p} ORDER BY last_seen DESC, article_id LIMIT {p}"
)


class SqlReader:
    """Snapshot reads over a DB-API connection; backends differ in how they connect."""

    mark: str = "?"

    @contextmanager
    def _read(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def _ts(self, value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC)
        return _parse_ts(str(value))

    def current_ids(self, site: str) -> tuple[tuple[str, int, str], ...]:
        with self._read() as conn:
            rows = conn.execute(_CURRENT.format(p=self.mark), (site,)).fetchall()
        return _stamp(rows)

    def load(self, site: str) -> Snapshot:
        with self._read() as conn:
            current = conn.execute(_CURRENT.format(p=self.mark), (site,)).fetchall()
            models = {}
            for kind, model_id, as_of, _ in current:
                if kind not in MODEL_TYPES:
                    continue
                # Iterated, not fetched whole: rows become compact lists as they arrive.
                rows = conn.execute(_ROWS.format(p=self.mark), (model_id,))
                models[str(kind)] = model_lists(int(model_id), str(kind), self._ts(as_of), rows)
            catalogue = [
                str(r[0])
                for r in conn.execute(_CATALOGUE.format(p=self.mark), (site, CATALOGUE_SIZE))
            ]
            ranker = None
            # Published with the user lists, or with the popular list when there are none.
            for kind in ("user", "popular"):
                if kind in models:
                    row = conn.execute(_PARAMS.format(p=self.mark), (models[kind].model_id,))
                    ranker = _session_ranker(site, row.fetchone())
                    break
        return Snapshot(
            site=site,
            models=models,
            catalogue=catalogue,
            stamp=_stamp(current),
            session_ranker=ranker,
        )


def _session_ranker(site: str, row: Sequence[Any] | None) -> SessionRanker | None:
    """The session ranker a user version's params carry; None without one, or unreadable (the
    blend answers then, and the log says why)."""
    if row is None:
        return None
    params = row[0] if isinstance(row[0], dict) else json.loads(row[0] or "{}")
    document = params.get(SESSION_RANKER_PARAM)
    if not document:
        return None
    try:
        return session_ranker_from_document(document)
    except (ValueError, KeyError, TypeError) as error:
        log.warning("%s: the published session ranker cannot be used: %s", site, error)
        return None


def _stamp(rows: Sequence[Sequence[Any]]) -> tuple[tuple[str, int, str], ...]:
    """What identifies the current versions: ids, and when each was finished (ids restart in a
    database recreated from scratch)."""
    return tuple(sorted((str(t), int(i), str(f)) for t, i, _, f in rows))


class SqliteReader(SqlReader):
    """Read-only: a missing file is an error, never a new empty database."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"sqlite:///{self.path}"

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, timeout=5.0, isolation_level=None
        )
        try:
            conn.execute("BEGIN")  # one WAL snapshot for every statement below
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()


class PostgresReader(SqlReader):
    mark = "%s"

    def __init__(self, url: str, connect_timeout: float = 3.0) -> None:
        self.url = libpq_url(url)
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return redact_url(self.url)

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(
            self.url, connect_timeout=max(1, int(self.connect_timeout)), autocommit=False
        ) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            yield conn


def reader_from_url(url: str) -> SqlReader:
    if is_postgres_url(url):
        return PostgresReader(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] != "sqlite" or not rest.startswith("/"):
        raise ValueError(f"expected sqlite:///path or postgresql://..., got {redact_url(url)!r}")
    return SqliteReader(rest[1:])


@dataclass
class HolderStatus:
    database_ok: bool = False
    last_error: str | None = None
    last_check: float | None = None
    last_load: float | None = None
    loads: int = 0


class SnapshotHolder:
    """The newest good snapshot of one site, behind one reference that requests read once."""

    def __init__(self, site: str, reader: Reader) -> None:
        self.site = site
        self.reader = reader
        self._snapshot = Snapshot(site=site, models={}, catalogue=[], loaded_at=0.0)
        self.status = HolderStatus()
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def refresh(self) -> bool:
        """Load a new snapshot if the current versions changed; True when it swapped.

        Any database error keeps the snapshot being served and is recorded in ``status``.
        """
        with self._lock:
            try:
                ids = self.reader.current_ids(self.site)
                swapped = False
                self.status.database_ok = True
                self.status.last_error = None
                if ids != self._snapshot.stamp or self.status.loads == 0:
                    loaded = self.reader.load(self.site)
                    lost = sorted(set(self._snapshot.models) - set(loaded.models))
                    if lost:
                        # A database restored empty, or a type's version deleted by hand: keep
                        # the last good lists rather than answer from nothing.
                        self.status.last_error = (
                            f"no current {', '.join(lost)} version in the database; "
                            "serving the last good snapshot"
                        )
                        log.warning("%s: %s", self.site, self.status.last_error)
                    else:
                        swapped = loaded.stamp != self._snapshot.stamp or self.status.loads == 0
                        self._snapshot = loaded  # one reference swap: readers see old or new
                        self.status.loads += 1
                        self.status.last_load = time.time()
                        if swapped:
                            log.info("%s: serving versions %s", self.site, loaded.key)
            except (sqlite3.Error, psycopg.Error, OSError) as error:
                if self.status.database_ok or self.status.last_error is None:
                    log.warning("%s: serving database unreachable: %s", self.site, error)
                self.status.database_ok = False
                self.status.last_error = f"{type(error).__name__}: {error}"
                swapped = False
            self.status.last_check = time.time()
            return swapped


class Refresher:
    """A daemon thread refreshing holders every ``interval`` seconds until stopped."""

    def __init__(self, holders: Sequence[SnapshotHolder], interval: float) -> None:
        self.holders = list(holders)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for holder in self.holders:
                holder.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
