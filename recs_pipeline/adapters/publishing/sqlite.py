"""The publisher on an embedded SQLite file: the zero-setup default."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Final, cast

import pandas as pd

from recs_pipeline.adapters.publishing.base import (
    _MAX_ERROR_CHARS,
    NEWEST_DESCRIPTION,
    ModelVersion,
    RecommendationBatch,
    SqlPublisher,
    _article_rows,
    _json,
    _log_written,
    _parse_ts,
    _ts_column,
    _ts_text,
    _utcnow,
    _validated_rows,
    migration_files,
)

log = logging.getLogger(__name__)

# -- SQL ---------------------------------------------------------------------------------------

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
_UPSERT_ARTICLE: Final = f"""
INSERT INTO article
    (site, article_id, path, title, published_at, first_seen, last_seen, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, article_id) DO UPDATE SET
{NEWEST_DESCRIPTION}
    first_seen = min(article.first_seen, excluded.first_seen),
    last_seen = max(article.last_seen, excluded.last_seen),
    updated_at = excluded.updated_at
"""

# -- the publisher -----------------------------------------------------------------------------


class SqlitePublisher(SqlPublisher):
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

    def _publish(
        self,
        site: str,
        as_of: dt.datetime,
        batches: Sequence[RecommendationBatch],
        keep: int,
    ) -> list[ModelVersion]:
        with self._publish_lock(), self._connect() as conn:
            conn.execute("PRAGMA cache_size = -131072")  # 128 MiB: bulk inserts stay in memory
            model_ids = self._start_versions(conn, site, as_of, batches)
            try:
                for model_id, batch in zip(model_ids, batches, strict=True):
                    self._write_rows(conn, model_id, batch)
                published = self._swap(conn, site, as_of, model_ids, batches, keep)
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
        checked = _article_rows(site, articles, _ts_column)
        if checked is None:
            return 0
        n = len(articles)
        now = _ts_text(_utcnow(), "now")
        rows = zip([site] * n, *checked.columns(), [now] * n, strict=True)
        with self._connect() as conn, _write_transaction(conn):
            conn.executemany(_UPSERT_ARTICLE, rows)
        return n

    # -- internals -----------------------------------------------------------------------------

    serving_query = SERVING_QUERY

    def _serving_snapshot(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return nullcontext()  # autocommit reads, as the serving API always made them

    def _exclusions(self, article_ids: list[str]) -> str:
        return json.dumps(article_ids)  # one parameter, however many ids (see SERVING_QUERY)

    def _transaction(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return _write_transaction(conn)

    def _bind_time(self, value: dt.datetime) -> str:
        return _ts_text(value, "timestamp")

    def _bind_document(self, value: Mapping[str, Any]) -> str:
        return _json(value)

    def _timestamp(self, value: str) -> dt.datetime:
        return _parse_ts(value)

    def _document(self, value: str) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(value))

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
        _log_written(model_id, batch.model_type, n, started)

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
