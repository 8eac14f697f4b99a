"""The publisher: serving tables whose recommendation lists change version atomically.

Every run writes a new *model version* per model type (user, article, popular) next to the one
being served, and only then swaps the two in one short transaction, so a reader always sees one
complete version, never a half-written one. A version's life is ``pending`` (rows being written)
then ``current`` (served) or ``stale`` (kept for a rollback, then pruned), or ``failed`` (the run
raised or crashed; kept for post-mortems, then pruned).

The embedded default is SQLite (one file, zero setup). The SQL sticks to what Postgres also
speaks so the planned Postgres publisher can share the table shapes, the statements' logic and
the lifecycle; only bulk loading (COPY) and locking (advisory locks) differ.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import re
import sqlite3
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast, get_args

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

ModelType = Literal["user", "article", "popular"]
#: Statuses stored in the `model` table; `pruned` only describes a version a publish returned
#: after retention deleted it (a backfill older than the kept versions).
ModelStatus = Literal["pending", "current", "stale", "failed", "pruned"]

MODEL_TYPES: Final[tuple[ModelType, ...]] = get_args(ModelType)
#: The source entity of a popular model's single list.
POPULAR_SOURCE: Final = "default"
#: Columns of ``RecommendationBatch.rows``.
RECOMMENDATION_COLUMNS: Final = ("source_entity_id", "rank", "recommended_article_id", "score")
#: Columns of the frame ``Publisher.recommendations`` returns.
SERVED_COLUMNS: Final = ("rank", "article_id", "score", "model_id")
#: Columns ``Publisher.upsert_articles`` reads; the first three are required.
ARTICLE_COLUMNS: Final = ("article_id", "first_seen", "last_seen", "path", "title", "published_at")

ABANDONED_ERROR: Final = "abandoned: left pending by an earlier run"

_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Fixed-width UTC text: lexicographic order is time order, in SQL as well as in Python.
_TS_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%f+00:00"
_MAX_ERROR_CHARS: Final = 4000


class RecommendationValidationError(ValueError):
    """A batch's rows are not publishable (null ids, bad ranks, non-finite scores...)."""


@dataclass(frozen=True, eq=False)
class RecommendationBatch:
    """One model type's recommendations for one run, plus what produced them.

    ``rows`` has the columns of ``RECOMMENDATION_COLUMNS``. ``source_entity_id`` is the user id
    for a user model, the article id for an article model and ``"default"`` for a popular one;
    ranks start at 1.
    """

    model_type: ModelType
    rows: pd.DataFrame
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _model_type(self.model_type)


@dataclass(frozen=True)
class ModelVersion:
    """One published (or attempted) model version, as recorded in the ``model`` table."""

    id: int
    site: str
    model_type: ModelType
    status: ModelStatus
    as_of: dt.datetime
    rows: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None


class Publisher(Protocol):
    """Where the recommendation lists are served from, and their version history."""

    def publish(
        self,
        site: str,
        as_of: dt.datetime,
        batches: Sequence[RecommendationBatch],
        keep: int = 3,
    ) -> list[ModelVersion]:
        """Write each batch as a new version, then make them current in one atomic swap."""
        ...

    def upsert_articles(self, site: str, articles: pd.DataFrame) -> int:
        """Merge articles into the registry; returns the number of input rows."""
        ...

    def current(self, site: str, model_type: str) -> ModelVersion | None:
        """The served version of a model type, if any."""
        ...

    def versions(self, site: str, model_type: str | None = None) -> list[ModelVersion]:
        """All recorded versions, newest first."""
        ...

    def recommendations(
        self,
        site: str,
        model_type: str,
        source_entity_id: str,
        size: int = 10,
        exclude: Collection[str] = (),
    ) -> pd.DataFrame:
        """The served list for one user / article (``"default"`` for popular)."""
        ...


def publisher_from_url(url: str) -> Publisher:
    """Build a publisher from a database URL (SQLAlchemy's spelling, so configs look familiar).

    ``sqlite:///relative/path.sqlite`` is relative to the working directory and
    ``sqlite:////absolute/path.sqlite`` is absolute. In-memory databases are refused: every
    operation opens its own connection, which would see a fresh empty database each time.
    """
    scheme, sep, rest = url.partition("://")
    expected = "expected sqlite:///path/to/file.sqlite"
    if not sep:
        raise ValueError(f"not a database URL: {url!r} ({expected})")
    dialect = scheme.lower().split("+", 1)[0]
    if dialect in ("postgresql", "postgres"):
        # The URL is not echoed: it may hold a password.
        raise ValueError(f"postgresql:// is not supported yet by the publisher; {expected}")
    if dialect != "sqlite":
        raise ValueError(f"unsupported publisher URL scheme {scheme!r}://; {expected}")
    if not rest or rest == "/" or rest == "/:memory:":
        raise ValueError(
            f"in-memory SQLite is not supported by the publisher (each operation opens its own "
            f"connection); {expected}"
        )
    if not rest.startswith("/"):
        raise ValueError(f"SQLite URLs have no host: {url!r}; {expected}")
    path = rest[1:]
    if "?" in path:
        raise ValueError(f"SQLite URL options are not supported: {url!r}; {expected}")
    return SqlitePublisher(path)


class SqlitePublisher:
    """The publisher on an embedded SQLite file.

    Every operation opens its own short-lived connection, so one instance is safe to share
    between threads, and several processes can use the same file. WAL mode lets readers keep
    reading the old version while a publish writes the new one; a busy timeout makes writers
    wait for each other instead of failing. Publishes are serialised for the whole call (not
    just per transaction) by a lock file next to the database: otherwise one run would take
    another's in-progress ``pending`` versions for crash leftovers. SQLite has one writer at a
    time anyway, so the lock covers all sites of the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        lock_timeout: float = 600.0,
    ) -> None:
        self._path = Path(path)
        if str(path) in ("", ":memory:"):
            raise ValueError("SqlitePublisher needs a database file, not an in-memory database")
        self._busy_timeout = busy_timeout
        self._lock_timeout = lock_timeout
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            # Persistent once set; readers never block the writer nor the other way round.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite %s did not switch to WAL (journal_mode=%s)", path, mode)
            applied = apply_migrations(conn)
        if applied:
            log.info("applied migrations %s to %s", applied, self._path)

    @property
    def path(self) -> Path:
        return self._path

    def migrate(self) -> list[int]:
        """Apply pending migrations (the constructor already does); returns the ones applied."""
        with self._connect() as conn:
            return apply_migrations(conn)

    # -- writing -------------------------------------------------------------------------------

    def publish(
        self,
        site: str,
        as_of: dt.datetime,
        batches: Sequence[RecommendationBatch],
        keep: int = 3,
    ) -> list[ModelVersion]:
        """Write each batch as a ``pending`` version, then swap them all in one transaction.

        A batch whose ``as_of`` is older than the served version's (a backfill) is recorded as
        ``stale`` and never replaces newer recommendations. Afterwards only the newest ``keep``
        stale versions (by as_of) and ``keep`` failed versions (by creation) of each published
        type remain. If anything raises, this call's versions become ``failed`` with the error,
        what was served stays served, and the exception propagates.
        """
        _check_site(site)
        as_of_text = _ts_text(as_of, "as_of")
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        types = [b.model_type for b in batches]
        if len(set(types)) != len(types):
            raise ValueError(f"one batch per model type per publish, got {types}")
        if not batches:
            return []

        with self._publish_lock(), self._connect() as conn:
            conn.execute("PRAGMA cache_size = -131072")  # 128 MiB: bulk inserts stay in memory
            model_ids = self._start_versions(conn, site, as_of_text, batches)
            try:
                for model_id, batch in zip(model_ids, batches, strict=True):
                    self._write_rows(conn, model_id, batch)
                published = self._swap(conn, site, as_of_text, model_ids, batches, keep)
            except BaseException as exc:
                self._fail_versions(conn, model_ids, exc)
                raise
            return published

    def upsert_articles(self, site: str, articles: pd.DataFrame) -> int:
        """Merge articles into the registry.

        ``first_seen`` keeps the earliest value and ``last_seen`` the latest; ``path``,
        ``title`` and ``published_at`` take the non-null value of whichever side was seen last,
        so re-loading an old day never overwrites a newer title.
        """
        _check_site(site)
        missing = [c for c in ARTICLE_COLUMNS[:3] if c not in articles.columns]
        if missing:
            raise ValueError(f"articles frame lacks columns {missing}")
        if articles.empty:
            return 0
        ids = articles["article_id"]
        if ids.isna().any() or (ids.astype(str) == "").any():
            raise ValueError("articles frame has null or empty article_id values")
        first_seen = _ts_column(articles["first_seen"], "first_seen", nullable=False)
        last_seen = _ts_column(articles["last_seen"], "last_seen", nullable=False)
        n = len(articles)
        path = _optional_text(articles, "path")
        title = _optional_text(articles, "title")
        published = (
            _ts_column(articles["published_at"], "published_at", nullable=True)
            if "published_at" in articles.columns
            else [None] * n
        )
        now = _ts_text(_utcnow(), "now")
        rows = zip(
            [site] * n,
            ids.astype(str).tolist(),
            path,
            title,
            published,
            first_seen,
            last_seen,
            [now] * n,
            strict=True,
        )
        with self._connect() as conn, _write_transaction(conn):
            conn.executemany(_UPSERT_ARTICLE, rows)
        return n

    # -- reading -------------------------------------------------------------------------------

    def current(self, site: str, model_type: str) -> ModelVersion | None:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_MODEL_FIELDS} FROM model "
                "WHERE site = ? AND type = ? AND status = 'current'",
                (site, _model_type(model_type)),
            ).fetchone()
        return None if row is None else _model_version(row)

    def versions(self, site: str, model_type: str | None = None) -> list[ModelVersion]:
        sql = f"SELECT {_MODEL_FIELDS} FROM model WHERE site = ?"
        args: list[Any] = [site]
        if model_type is not None:
            sql += " AND type = ?"
            args.append(_model_type(model_type))
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC", args).fetchall()
        return [_model_version(row) for row in rows]

    def recommendations(
        self,
        site: str,
        model_type: str,
        source_entity_id: str,
        size: int = 10,
        exclude: Collection[str] = (),
    ) -> pd.DataFrame:
        """The current model's list for one source entity, best first, minus ``exclude``.

        A user without recommendations (unknown to the current user model, none left after
        ``exclude``, or no user model yet) gets the current popular list instead, like the
        serving API always did. ``rank`` is the served position (1..n, after exclusions);
        ``model_id`` says which version answered.
        """
        kind = _model_type(model_type)
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        excluded = json.dumps(sorted({str(a) for a in exclude}))
        with self._connect() as conn:
            rows = conn.execute(SERVING_QUERY, (site, kind, str(source_entity_id), excluded, size))
            found = rows.fetchall()
            if not found and kind == "user" and size > 0:
                found = conn.execute(
                    SERVING_QUERY, (site, "popular", POPULAR_SOURCE, excluded, size)
                ).fetchall()
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(found) + 1, dtype=np.int64),
                "article_id": pd.Series([r[0] for r in found], dtype="str"),
                "score": np.array([r[1] for r in found], dtype=np.float64),
                "model_id": np.array([r[2] for r in found], dtype=np.int64),
            }
        )

    # -- internals -----------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; every BEGIN/COMMIT here is explicit.
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")  # per connection; the cascade needs it
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
            # A big publish grows the WAL; truncate it back after checkpoints.
            conn.execute("PRAGMA journal_size_limit = 67108864")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _publish_lock(self) -> Iterator[None]:
        """Hold the database's publish lock (the SQLite stand-in for an advisory lock).

        ``flock`` is released by the OS when the holder dies, so a crashed run never wedges the
        next one; it also excludes threads of one process, as each opens its own descriptor.
        The lock file is separate because closing any descriptor of the database file itself
        would drop SQLite's own POSIX locks.
        """
        if sys.platform == "win32":  # no flock: fall back to the per-transaction locking
            yield
            return
        import fcntl

        lock_path = self._path.with_name(self._path.name + ".publish.lock")
        with open(lock_path, "a+b") as handle:
            deadline = time.monotonic() + self._lock_timeout
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"another publish on {self._path} held the lock for more than "
                            f"{self._lock_timeout:.0f}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _start_versions(
        self,
        conn: sqlite3.Connection,
        site: str,
        as_of_text: str,
        batches: Sequence[RecommendationBatch],
    ) -> list[int]:
        """Fail crash leftovers, then record this run's versions as ``pending`` (committed).

        Committing the pending rows first is what lets the next run see a crash: a version left
        ``pending`` while nobody holds the publish lock belongs to a run that died.
        """
        now = _ts_text(_utcnow(), "now")
        ids = []
        with _write_transaction(conn):
            for batch in batches:
                abandoned = conn.execute(
                    "UPDATE model SET status = 'failed', error = ?, finished_at = ? "
                    "WHERE site = ? AND type = ? AND status = 'pending'",
                    (ABANDONED_ERROR, now, site, batch.model_type),
                ).rowcount
                if abandoned:
                    log.warning(
                        "%s/%s: marked %d abandoned pending version(s) failed",
                        site,
                        batch.model_type,
                        abandoned,
                    )
                cursor = conn.execute(
                    "INSERT INTO model (site, type, status, as_of, params, metrics, created_at) "
                    "VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                    (
                        site,
                        batch.model_type,
                        as_of_text,
                        _json(batch.params),
                        _json(batch.metrics),
                        now,
                    ),
                )
                ids.append(cast(int, cursor.lastrowid))
        return ids

    def _write_rows(
        self, conn: sqlite3.Connection, model_id: int, batch: RecommendationBatch
    ) -> None:
        started = time.perf_counter()
        columns = _validated_rows(batch)
        n = len(columns[0])
        with _write_transaction(conn):
            # One executemany over the whole batch: sqlite3 steps through the iterator in C.
            conn.executemany(
                "INSERT INTO recommendation "
                "(model_id, source_entity_id, rank, recommended_article_id, score) "
                "VALUES (?, ?, ?, ?, ?)",
                zip([model_id] * n, *columns, strict=True),
            )
            conn.execute("UPDATE model SET row_count = ? WHERE id = ?", (n, model_id))
        elapsed = time.perf_counter() - started
        log.info(
            "model %d (%s): wrote %d rows in %.2fs (%.0f rows/s)",
            model_id,
            batch.model_type,
            n,
            elapsed,
            n / elapsed if elapsed > 0 else float("inf"),
        )

    def _swap(
        self,
        conn: sqlite3.Connection,
        site: str,
        as_of_text: str,
        model_ids: Sequence[int],
        batches: Sequence[RecommendationBatch],
        keep: int,
    ) -> list[ModelVersion]:
        """Promote every batch and prune old versions in one transaction (all or nothing).

        Returns the versions as promoted. A backfilled version older than the ``keep`` newest
        stale ones is pruned at once; it is returned with the status ``pruned`` so the caller
        still sees what happened to it.
        """
        now = _ts_text(_utcnow(), "now")
        new_as_of = _parse_ts(as_of_text)
        published: list[ModelVersion] = []
        with _write_transaction(conn):
            for model_id, batch in zip(model_ids, batches, strict=True):
                served = conn.execute(
                    "SELECT id, as_of FROM model "
                    "WHERE site = ? AND type = ? AND status = 'current'",
                    (site, batch.model_type),
                ).fetchone()
                promote = served is None or new_as_of >= _parse_ts(served[1])
                if promote and served is not None:
                    conn.execute("UPDATE model SET status = 'stale' WHERE id = ?", (served[0],))
                updated = conn.execute(
                    "UPDATE model SET status = ?, finished_at = ? "
                    "WHERE id = ? AND status = 'pending'",
                    ("current" if promote else "stale", now, model_id),
                ).rowcount
                if updated != 1:
                    raise RuntimeError(
                        f"model {model_id} is no longer pending: another run marked it "
                        "(concurrent publishers without the publish lock?)"
                    )
                published.append(self._version(conn, model_id))
                if not promote:
                    log.info(
                        "%s/%s: as_of %s is older than the served %s; kept as stale",
                        site,
                        batch.model_type,
                        as_of_text,
                        served[1] if served else None,
                    )
                for status, order in (("stale", "as_of DESC, id DESC"), ("failed", "id DESC")):
                    # Deleting a model cascades to its recommendation rows.
                    conn.execute(
                        "DELETE FROM model WHERE id IN (SELECT id FROM ("
                        f"SELECT id, ROW_NUMBER() OVER (ORDER BY {order}) AS n FROM model "
                        "WHERE site = ? AND type = ? AND status = ?) AS ranked WHERE n > ?)",
                        (site, batch.model_type, status, keep),
                    )
            remaining = {
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM model WHERE id IN ({','.join('?' * len(model_ids))})",
                    list(model_ids),
                )
            }
        return [
            version if version.id in remaining else dataclasses.replace(version, status="pruned")
            for version in published
        ]

    def _fail_versions(
        self, conn: sqlite3.Connection, model_ids: Sequence[int], exc: BaseException
    ) -> None:
        """Record the failure on this call's still-pending versions and drop their rows.

        Runs in a fresh transaction; if even that fails, the original exception still wins (the
        versions then stay pending and the next publish marks them abandoned).
        """
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        marks = ",".join("?" * len(model_ids))
        try:
            if conn.in_transaction:
                conn.rollback()
            with _write_transaction(conn):
                failed = conn.execute(
                    "UPDATE model SET status = 'failed', error = ?, finished_at = ? "
                    f"WHERE id IN ({marks}) AND status = 'pending' RETURNING id",
                    (error, _ts_text(_utcnow(), "now"), *model_ids),
                ).fetchall()
                ids = [row[0] for row in failed]
                if ids:
                    conn.execute(
                        "DELETE FROM recommendation "
                        f"WHERE model_id IN ({','.join('?' * len(ids))})",
                        ids,
                    )
        except Exception as cleanup:  # must not mask the original error
            exc.add_note(f"marking models {list(model_ids)} failed also failed: {cleanup!r}")
            log.exception("could not mark models %s failed", list(model_ids))

    def _version(self, conn: sqlite3.Connection, model_id: int) -> ModelVersion:
        row = conn.execute(f"SELECT {_MODEL_FIELDS} FROM model WHERE id = ?", (model_id,))
        return _model_version(row.fetchone())


# -- migrations --------------------------------------------------------------------------------


def migration_files() -> list[tuple[int, str, str]]:
    """The packaged SQLite migrations as ``(version, file name, sql)``, in version order."""
    folder = resources.files("recs_pipeline.adapters").joinpath("migrations").joinpath("sqlite")
    found: dict[int, tuple[int, str, str]] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(
                f"two migrations numbered {version}: {found[version][1]}, {entry.name}"
            )
        found[version] = (version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def apply_migrations(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations``; returns their versions.

    Everything runs in one ``BEGIN IMMEDIATE`` transaction, so two processes opening a new
    file at once apply each migration exactly once, and a broken migration leaves nothing
    behind. ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    applied: list[int] = []
    with _write_transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (version, _ts_text(_utcnow(), "now")),
            )
            log.debug("applied migration %s", name)
            applied.append(version)
    return applied


def _statements(sql: str) -> Iterator[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement and not _is_only_comments(statement):
                yield statement
    if buffer.strip() and not _is_only_comments(buffer):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")


def _is_only_comments(sql: str) -> bool:
    lines = (line.strip() for line in sql.splitlines())
    return all(not line or line.startswith("--") or line == ";" for line in lines)


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE``: take the write lock up front, so the transaction cannot fail later
    with SQLITE_BUSY when it upgrades from reading to writing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # some errors (disk full...) already rolled back
            conn.rollback()
        raise
    conn.execute("COMMIT")


# -- SQL ---------------------------------------------------------------------------------------

_MODEL_FIELDS: Final = (
    "id, site, type, status, as_of, row_count, params, metrics, created_at, finished_at, error"
)

#: The serving query; parameters: site, model type, source entity id, JSON array of article ids
#: to exclude, limit. The scalar subquery finds the one current version (``model_one_current``
#: guarantees one) through ``model_site_type_status``; the primary key of ``recommendation``
#: then yields the entity's list already in rank order, so LIMIT stops early and nothing is
#: sorted. (The equivalent JOIN makes SQLite sort, not knowing only one version matches.) The
#: exclusions travel as one JSON parameter, so their number is not bounded by SQLite's
#: parameter limit; Postgres would take an array.
SERVING_QUERY: Final = """
SELECT r.recommended_article_id, r.score, r.model_id
FROM recommendation r
WHERE r.model_id = (SELECT id FROM model WHERE site = ? AND type = ? AND status = 'current')
  AND r.source_entity_id = ?
  AND r.recommended_article_id NOT IN (SELECT value FROM json_each(?))
ORDER BY r.rank
LIMIT ?
"""

# Multi-argument min()/max() compare the fixed-width timestamp text; "newest" for the
# descriptive columns is decided by last_seen, not by the order of the loads.
_UPSERT_ARTICLE: Final = """
INSERT INTO article
    (site, article_id, path, title, published_at, first_seen, last_seen, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, article_id) DO UPDATE SET
    path = CASE WHEN excluded.last_seen >= article.last_seen
                THEN coalesce(excluded.path, article.path)
                ELSE coalesce(article.path, excluded.path) END,
    title = CASE WHEN excluded.last_seen >= article.last_seen
                 THEN coalesce(excluded.title, article.title)
                 ELSE coalesce(article.title, excluded.title) END,
    published_at = CASE WHEN excluded.last_seen >= article.last_seen
                        THEN coalesce(excluded.published_at, article.published_at)
                        ELSE coalesce(article.published_at, excluded.published_at) END,
    first_seen = min(article.first_seen, excluded.first_seen),
    last_seen = max(article.last_seen, excluded.last_seen),
    updated_at = excluded.updated_at
"""


# -- helpers -----------------------------------------------------------------------------------


def _validated_rows(
    batch: RecommendationBatch,
) -> tuple[list[str], list[int], list[str], list[float]]:
    """Check a batch's rows and return its columns as plain Python lists, ready to bind.

    Rows are sorted by (source entity, rank): that is the table's key order, so SQLite appends
    to its B-tree instead of inserting at random places.
    """
    kind = batch.model_type
    frame = batch.rows
    missing = [c for c in RECOMMENDATION_COLUMNS if c not in frame.columns]
    if missing:
        raise RecommendationValidationError(f"{kind} batch lacks columns {missing}")
    if frame.empty:
        raise RecommendationValidationError(
            f"{kind} batch is empty; refusing to replace the served model with nothing"
        )
    problems = []
    for column in RECOMMENDATION_COLUMNS:
        nulls = int(frame[column].isna().sum())
        if nulls:
            problems.append(f"{nulls} null {column}")
    if problems:
        raise RecommendationValidationError(f"{kind} batch has {', '.join(problems)}")

    source = frame["source_entity_id"].astype(str)
    article = frame["recommended_article_id"].astype(str)
    for name, ids in (("source_entity_id", source), ("recommended_article_id", article)):
        empty = int((ids == "").sum())
        if empty:
            problems.append(f"{empty} empty {name}")
    if kind == "popular" and (source != POPULAR_SOURCE).any():
        problems.append(f"source_entity_id other than {POPULAR_SOURCE!r} in a popular batch")

    try:
        rank_values = pd.to_numeric(frame["rank"]).to_numpy(dtype=np.float64)
        score = pd.to_numeric(frame["score"]).to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RecommendationValidationError(
            f"{kind} batch: non-numeric rank or score: {exc}"
        ) from exc
    if not np.all(rank_values == np.floor(rank_values)) or (rank_values < 1).any():
        problems.append("ranks that are not integers >= 1")
    bad_scores = int((~np.isfinite(score)).sum())
    if bad_scores:
        problems.append(f"{bad_scores} non-finite score")
    if problems:
        raise RecommendationValidationError(f"{kind} batch has {', '.join(problems)}")

    rank = rank_values.astype(np.int64)
    # ``.array`` keeps Arrow-backed strings as they are (to_numpy would copy them to objects).
    keyed = pd.DataFrame({"s": source.array, "r": rank, "a": article.array, "x": score})
    keyed = keyed.sort_values(["s", "r"], kind="stable", ignore_index=True)
    # Sorted, so a duplicate (source, rank) pair sits right after its twin.
    duplicated = (keyed["s"] == keyed["s"].shift()) & (keyed["r"].diff() == 0)
    if duplicated.any():
        example = keyed.loc[duplicated, ["s", "r"]].iloc[0].tolist()
        raise RecommendationValidationError(
            f"{kind} batch has {int(duplicated.sum())} duplicate (source_entity_id, rank) "
            f"pairs, e.g. {example}"
        )
    return (
        keyed["s"].tolist(),
        keyed["r"].tolist(),
        keyed["a"].tolist(),
        keyed["x"].tolist(),
    )


def _model_type(value: str) -> ModelType:
    if value not in MODEL_TYPES:
        raise ValueError(f"model type must be one of {MODEL_TYPES}, got {value!r}")
    return cast(ModelType, value)


def _check_site(site: str) -> None:
    if not isinstance(site, str) or not site:
        raise ValueError(f"site must be a non-empty string, got {site!r}")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts_text(value: dt.datetime, name: str) -> str:
    """UTC text in the one fixed format; naive datetimes are refused rather than guessed."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(dt.UTC).strftime(_TS_FORMAT)


def _parse_ts(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _ts_column(values: pd.Series, name: str, *, nullable: bool) -> list[str | None]:
    """A timestamp column (datetimes or ISO text; naive means UTC) as fixed-format UTC text."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    if not nullable and parsed.isna().any():
        raise ValueError(f"articles frame has null {name} values")
    text = parsed.dt.strftime(_TS_FORMAT)
    return [None if pd.isna(v) else str(v) for v in text.tolist()]


def _optional_text(frame: pd.DataFrame, column: str) -> list[str | None]:
    if column not in frame.columns:
        return [None] * len(frame)
    return [None if pd.isna(v) else str(v) for v in frame[column].tolist()]


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(_plain(value), sort_keys=True, allow_nan=False)


def _plain(value: Any) -> Any:
    """Make params/metrics JSON-safe: numpy scalars unwrapped, NaN/inf as null, dates as text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def _model_version(row: tuple[Any, ...]) -> ModelVersion:
    (id_, site, kind, status, as_of, rows, params, metrics, created, finished, error) = row
    return ModelVersion(
        id=int(id_),
        site=site,
        model_type=cast(ModelType, kind),
        status=cast(ModelStatus, status),
        as_of=_parse_ts(as_of),
        rows=int(rows),
        params=json.loads(params),
        metrics=json.loads(metrics),
        created_at=_parse_ts(created),
        finished_at=None if finished is None else _parse_ts(finished),
        error=error,
    )
