"""The publisher on an embedded SQLite file: the zero-setup default."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pandas as pd

from recs_pipeline.adapters.publishing.base import (
    _MAX_ERROR_CHARS,
    ABANDONED_ERROR,
    ARTICLE_COLUMNS,
    POPULAR_SOURCE,
    ModelStatus,
    ModelType,
    ModelVersion,
    RecommendationBatch,
    _check_site,
    _json,
    _model_type,
    _optional_text,
    _parse_ts,
    _ts_column,
    _ts_text,
    _utcnow,
    _validated_rows,
    migration_files,
)

log = logging.getLogger(__name__)


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
        for version, name, sql in migration_files("sqlite"):
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
