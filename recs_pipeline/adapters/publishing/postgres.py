"""The publisher on Postgres: what a recommendation API reads in a deployment.

Same lifecycle as the SQLite publisher (``pending`` → ``current`` → ``stale``, ``failed``, keep
N), built from Postgres' own tools:

- **Per-site advisory lock** (session level, taken first and held for the whole publish): two
  publishes of one site run one after the other, publishes of different sites run side by side.
  It is the only lock a publish waits for on purpose, so publishes cannot deadlock each other;
  the server releases it when a publishing process dies.
- **Binary COPY into a partition of its own**: each version's rows (encoded column-wise, see
  ``pgcopy``) go to a new table
  ``recommendation_m<id>`` (no index to maintain while loading), its serving index is built once,
  and the table is attached to ``recommendation`` — all in one transaction, so a crash leaves
  nothing but the ``pending`` model row, which the next publish marks ``failed``.
- **The swap is one short transaction** of ``model`` updates: a reader's snapshot sees the old
  current version or the new one, never a mix. Retention deletes old ``model`` rows in the same
  transaction; their partitions are then detached concurrently and dropped, so pruning never
  blocks a reader.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import quote, unquote

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.json import Jsonb

from recs_pipeline.adapters.publishing.base import (
    _MAX_ERROR_CHARS,
    NEWEST_DESCRIPTION,
    ModelVersion,
    RecommendationBatch,
    SqlPublisher,
    _article_rows,
    _log_written,
    _plain,
    _utc_column,
    _utcnow,
    _validated_frame,
    migration_files,
)
from recs_pipeline.adapters.publishing.pgcopy import recommendation_copy_data

log = logging.getLogger(__name__)

#: Serialises migrations of one database between processes (any constant distinct from sites').
_MIGRATION_LOCK: Final = 0x7265637300000001
#: Serialises the reclaiming of pruned partitions between all publishers of a database.
_RECLAIM_LOCK: Final = 0x7265637300000002
_PARTITION: Final = re.compile(r"^recommendation_m(\d+)$")

#: A version's partition, spelled out rather than ``LIKE recommendation`` so loading takes no
#: lock on the parent until the attach; the attach refuses any drift from the parent's columns
#: and CHECK constraints.
_PARTITION_DDL: Final = """
CREATE TABLE {table} (
    model_id               bigint NOT NULL CHECK (model_id = {id}),
    source_entity_id       text COLLATE "C" NOT NULL,
    rank                   integer NOT NULL CONSTRAINT recommendation_rank_check CHECK (rank >= 1),
    recommended_article_id text COLLATE "C" NOT NULL,
    score                  double precision NOT NULL
)
"""

#: The serving query; parameters: site, model type, source entity id, article ids to exclude
#: (an array), limit. The scalar subquery finds the one current version (``model_one_current``
#: guarantees one); at run time Postgres prunes every other partition, and the partition's
#: ``(source_entity_id, rank)`` index yields the list in rank order, so LIMIT stops early.
SERVING_QUERY: Final = """
SELECT r.recommended_article_id, r.score, r.model_id
FROM recommendation r
WHERE r.model_id = (
        SELECT id FROM model WHERE site = %s AND type = %s AND status = 'current')
  AND r.source_entity_id = %s
  AND r.recommended_article_id <> ALL (%s::text[])
ORDER BY r.rank
LIMIT %s
"""

# "Newest" for the descriptive columns is decided by last_seen, not by the order of the loads;
# rows of one load are first merged per article (ON CONFLICT may touch a row only once).
_UPSERT_ARTICLE: Final = f"""
INSERT INTO article
    (site, article_id, path, title, published_at, first_seen, last_seen, updated_at)
SELECT %(site)s, article_id,
    (array_agg(path ORDER BY last_seen DESC) FILTER (WHERE path IS NOT NULL))[1],
    (array_agg(title ORDER BY last_seen DESC) FILTER (WHERE title IS NOT NULL))[1],
    (array_agg(published_at ORDER BY last_seen DESC) FILTER (WHERE published_at IS NOT NULL))[1],
    min(first_seen), max(last_seen), %(now)s
FROM article_load
GROUP BY article_id
ON CONFLICT (site, article_id) DO UPDATE SET
{NEWEST_DESCRIPTION}
    first_seen = least(article.first_seen, excluded.first_seen),
    last_seen = greatest(article.last_seen, excluded.last_seen),
    updated_at = excluded.updated_at
"""


#: What a NUL character becomes in Postgres text (which cannot hold one): U+FFFD, the
#: replacement character. Ingest quarantines control characters in ids and URLs, so this only
#: ever applies to text from elsewhere (a CMS title, data written before that rule).
NUL_REPLACEMENT: Final = "\ufffd"


def pg_text(value: str) -> str:
    """Text Postgres can store: NUL replaced by ``NUL_REPLACEMENT`` (a COPY would fail)."""
    return value.replace("\x00", NUL_REPLACEMENT) if "\x00" in value else value


def _pg_texts(values: list[str | None]) -> list[str | None]:
    return [None if v is None else pg_text(v) for v in values]


@dataclass(frozen=True)
class _PgUrl:
    """A postgres URL cut into its parts, leniently: what a person typed, not what RFC 3986
    allows (a raw ``@``, space or ``%`` in the password is the password)."""

    user: str | None
    password: str | None
    hosts: str  # host[:port][,host[:port]...] as given
    path: str  # "/database" or ""
    query: str  # without "?"

    @classmethod
    def parse(cls, url: str) -> _PgUrl:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
            raise ValueError("not a postgresql:// URL")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            userinfo, hostpart = "", rest
        user, colon, password = userinfo.partition(":")
        hostpart, _, query = hostpart.partition("?")
        slash = hostpart.find("/")
        hosts, path = (hostpart, "") if slash < 0 else (hostpart[:slash], hostpart[slash:])
        return cls(
            unquote(user) if at else None,
            unquote(password) if at and colon else None,
            hosts,
            path,
            query,
        )

    def redacted(self) -> str:
        user = quote(self.user or "", safe="")
        userinfo = f"{user}:***@" if self.password is not None else (f"{user}@" if user else "")
        query = f"?{_redacted_query(self.query)}" if self.query else ""
        return f"postgresql://{userinfo}{self.hosts}{self.path}{query}"

    def checked_hosts(self) -> str:
        """``hosts`` checked (ports are numbers, IPv6 addresses are bracketed), or ValueError."""
        for entry in self.hosts.split(",") if self.hosts else []:
            if entry.startswith("["):
                close = entry.find("]")
                if close < 0:
                    raise ValueError(f"an IPv6 host without its closing ']': {entry!r}")
                host, port = entry[1:close], entry[close + 1 :]
                if port and not port.startswith(":"):
                    raise ValueError(f"unexpected text after the IPv6 host: {entry!r}")
                port = port[1:]
            else:
                host, _, port = entry.partition(":")
                if "[" in host or "]" in host:
                    raise ValueError(f"a malformed host: {entry!r}")
            if port and not port.isdigit():
                raise ValueError(f"the port is not a number: {entry!r}")
            if any(c.isspace() for c in host):
                raise ValueError(f"a space in the host: {entry!r}")
        return self.hosts


def _redacted_query(query: str) -> str:
    return "&".join(
        f"{name}=***" if name.lower() in ("password", "passfile", "sslpassword") else part
        for part in query.split("&")
        for name in [part.partition("=")[0]]
    )


def _pg_json(value: Any) -> Any:
    """A JSON document Postgres' jsonb accepts: NUL in keys and strings replaced (``pg_text``)."""
    if isinstance(value, str):
        return pg_text(value)
    if isinstance(value, dict):
        return {pg_text(str(k)): _pg_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pg_json(v) for v in value]
    return value


def redact_url(url: str) -> str:
    """A database URL safe to log: the password, if any, replaced by ``***`` (also in a URL
    libpq would refuse: a raw ``@``, space or ``%`` in the password, a bad host or port)."""
    try:
        return _PgUrl.parse(url).redacted()
    except ValueError:
        pass
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hostpart}"


def libpq_url(url: str) -> str:
    """A SQLAlchemy-style URL (``postgresql+psycopg://``, ``postgres://``) as libpq takes it.

    The user name, password and database are percent-encoded again, so libpq never fails to
    parse them (its parse errors quote the text they choke on, password included); a bad host
    or port is refused here with the URL redacted.
    """
    try:
        parts = _PgUrl.parse(url)
        hosts = parts.checked_hosts()
    except ValueError as error:
        raise ValueError(f"not a valid postgresql:// URL ({error}): {redact_url(url)}") from None
    userinfo = ""
    if parts.user is not None:
        userinfo = quote(parts.user, safe="")
        if parts.password is not None:
            userinfo += ":" + quote(parts.password, safe="")
        userinfo += "@"
    database = "/" + quote(unquote(parts.path[1:]), safe="") if parts.path else ""
    query = f"?{parts.query}" if parts.query else ""
    return f"postgresql://{userinfo}{hosts}{database}{query}"


def scrubbed(error: BaseException, conninfo: str) -> str:
    """An error's text with the connection's password (raw or encoded) replaced by ``***``."""
    text = str(error)
    try:
        password = _PgUrl.parse(conninfo).password
    except ValueError:
        return text
    if password:
        for form in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(form, "***")
    return text


@contextmanager
def connect(conninfo: str, **options: Any) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """``psycopg.connect`` whose failure never carries the password (nor a cause that does)."""
    try:
        conn = psycopg.connect(conninfo, **options)
    except psycopg.Error as error:
        message = f"{scrubbed(error, conninfo)} ({redact_url(conninfo)})"
        kind = type(error) if isinstance(error, psycopg.OperationalError) else psycopg.Error
    else:
        with conn:
            yield conn
        return
    # Raised outside the ``except`` block: no __context__ holding the original message.
    raise kind(message)


def partition_name(model_id: int) -> str:
    return f"recommendation_m{int(model_id)}"


class PostgresPublisher(SqlPublisher):
    """The publisher on a Postgres database (``postgresql://user:password@host:port/db``).

    Every operation opens its own connection, so one instance is safe to share between threads,
    and any number of processes may publish to one database. The constructor applies the
    versioned migrations of ``adapters/migrations/postgres``.
    """

    param_mark = "%s"
    serving_query = SERVING_QUERY
    lock_served = " FOR UPDATE"  # a publish without the site lock cannot promote over it

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 600.0,
        reclaim_wait: float = 30.0,
        connect_timeout: int = 10,
        application_name: str = "recs_pipeline",
        idle_timeout: float = 120.0,
    ) -> None:
        self._conninfo = libpq_url(url)
        self._redacted = redact_url(self._conninfo)
        self._lock_timeout = lock_timeout
        # A publisher that stops (SIGSTOP, a hung process, a VM paused) while it holds the site
        # lock between statements or inside a transaction is disconnected by the server after
        # this long, which releases the lock; keepalives notice a host or network that is gone.
        self._idle_timeout = idle_timeout
        # How long dropping a pruned version's partition may wait for queries already reading
        # ``recommendation``: a long analyst query must not hold up publishing; it is retried.
        self._reclaim_wait = reclaim_wait
        self._connect_options: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "application_name": application_name,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        applied = self.migrate()
        if applied:
            log.info("applied migrations %s to %s", applied, self._redacted)

    def __repr__(self) -> str:
        return f"PostgresPublisher({self._redacted!r})"

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
        with self._connect() as conn, self._site_lock(conn, site):
            model_ids = self._start_versions(conn, site, as_of, batches)
            try:
                for model_id, batch in zip(model_ids, batches, strict=True):
                    self._write_rows(conn, model_id, batch)
                published = self._swap(conn, site, as_of, model_ids, batches, keep)
            except BaseException as exc:
                self._fail_versions(model_ids, exc)
                self._reclaim_partitions_quietly(site)
                raise
            self._reclaim_partitions_quietly(site, conn)
            return published

    def upsert_articles(self, site: str, articles: pd.DataFrame) -> int:
        """Merge articles into the registry (same rules as the SQLite publisher).

        ``first_seen`` keeps the earliest value and ``last_seen`` the latest; ``path``,
        ``title`` and ``published_at`` take the non-null value of whichever side was seen last.
        """
        checked = _article_rows(site, articles, _timestamps)
        if checked is None:
            return 0
        ids, paths, titles, published, first_seen, last_seen = checked.columns()
        rows = zip(
            _pg_texts(ids),
            _pg_texts(paths),
            _pg_texts(titles),
            published,
            first_seen,
            last_seen,
            strict=True,
        )
        with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                'CREATE TEMPORARY TABLE article_load (article_id text COLLATE "C", path text, '
                "title text, published_at timestamptz, first_seen timestamptz, "
                "last_seen timestamptz) ON COMMIT DROP"
            )
            with cur.copy("COPY article_load FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(
                    ["text", "text", "text", "timestamptz", "timestamptz", "timestamptz"]
                )
                for row in rows:
                    copy.write_row(row)
            cur.execute(_UPSERT_ARTICLE, {"site": site, "now": _utcnow()})
        return len(articles)

    # -- internals -----------------------------------------------------------------------------

    def _serving_snapshot(self, conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
        return conn.transaction()  # the popular fallback comes from the same moment

    def _exclusions(self, article_ids: list[str]) -> list[str]:
        return [pg_text(a) for a in article_ids]  # a text[] parameter

    def _bind_id(self, value: str) -> str:
        return pg_text(value)  # stored ids had NUL replaced the same way

    def _transaction(self, conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
        return conn.transaction()

    def _bind_time(self, value: dt.datetime) -> dt.datetime:
        return value

    def _bind_document(self, value: Mapping[str, Any]) -> Jsonb:
        return Jsonb(_pg_json(_plain(value)))

    def _timestamp(self, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC)

    def _document(self, value: dict[str, Any]) -> dict[str, Any]:
        return dict(value)  # jsonb arrives decoded

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        # Autocommit: every transaction below is an explicit ``conn.transaction()`` block.
        with connect(self._conninfo, autocommit=True, **self._connect_options) as conn:
            if self._idle_timeout > 0:
                millis = str(int(self._idle_timeout * 1000))
                conn.execute(
                    "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                    (millis,),
                )
                if conn.info.server_version >= 140000:  # idle_session_timeout is new in 14
                    conn.execute("SELECT set_config('idle_session_timeout', %s, false)", (millis,))
            yield conn

    def _lock_holder(self, conn: psycopg.Connection[Any], key: tuple[str, str]) -> str:
        """Who holds a site's publish lock, as a person reads it (or why that is unknown)."""
        try:
            row = conn.execute(
                "WITH k AS (SELECT hashtextextended(%s || ':' || %s, 0) AS v) "
                "SELECT a.pid, a.application_name, a.state, "
                "extract(epoch FROM now() - a.state_change)::bigint "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid, k "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid::bigint = (k.v >> 32) & 4294967295 "
                "AND l.objid::bigint = k.v & 4294967295 AND l.objsubid = 1",
                key,
            ).fetchone()
        except psycopg.Error:
            return "holder unknown"
        if row is None:
            return "released since"
        pid, application, state, seconds = row
        name = application or "no application name"
        return f"held by server pid {pid} ({name}, {state} for {seconds}s)"

    @contextmanager
    def _site_lock(self, conn: psycopg.Connection[Any], site: str) -> Iterator[None]:
        """Hold the site's publish lock (a session-level advisory lock) for the block."""
        key = ("recs_pipeline.publish", site)
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{self._lock_timeout}s",))
        try:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s || ':' || %s, 0))", key)
        except psycopg.errors.LockNotAvailable:
            holder = self._lock_holder(conn, key)
            raise TimeoutError(
                f"another publish of {site!r} held the lock for more than "
                f"{self._lock_timeout:g}s ({holder}); a holder that stopped responding is "
                f"disconnected by the server after {self._idle_timeout:g}s idle"
            ) from None
        finally:
            conn.execute("RESET lock_timeout")
        try:
            yield
        finally:
            if not conn.closed and not conn.broken:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s || ':' || %s, 0))", key)

    def _write_rows(
        self, conn: psycopg.Connection[Any], model_id: int, batch: RecommendationBatch
    ) -> None:
        """Load a version's rows into its own partition: create, COPY, index, attach."""
        started = time.perf_counter()
        rows = _validated_frame(batch)
        n = len(rows)
        table = sql.Identifier(partition_name(model_id))
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL(_PARTITION_DDL).format(table=table, id=sql.Literal(model_id)))
            with cur.copy(
                sql.SQL(
                    "COPY {} (model_id, source_entity_id, rank, recommended_article_id, score) "
                    "FROM STDIN (FORMAT BINARY)"
                ).format(table),
                # Sending happens in a worker thread while the next block is encoded.
                writer=QueuedLibpqWriter(cur),
            ) as copy:
                for block in recommendation_copy_data(model_id, rows):
                    copy.write(block)
            cur.execute(
                sql.SQL("CREATE INDEX {} ON {} (source_entity_id, rank)").format(
                    sql.Identifier(f"{partition_name(model_id)}_serving"), table
                )
            )
            # The CHECK above implies the partition constraint: attaching scans nothing.
            cur.execute(
                sql.SQL("ALTER TABLE recommendation ATTACH PARTITION {} FOR VALUES IN ({})").format(
                    table, sql.Literal(model_id)
                )
            )
            cur.execute("UPDATE model SET row_count = %s WHERE id = %s", (n, model_id))
        _log_written(model_id, batch.model_type, n, started)

    def _fail_versions(self, model_ids: Sequence[int], exc: BaseException) -> None:
        """Record the failure on this call's still-pending versions (on a fresh connection: the
        publishing one may be mid-COPY or broken). If even that fails, the original exception
        still wins; the versions then stay pending and the next publish marks them abandoned."""
        error = pg_text(f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS])
        try:
            with self._connect() as conn:
                conn.execute(
                    "UPDATE model SET status = 'failed', error = %s, finished_at = %s "
                    "WHERE id = ANY(%s) AND status = 'pending'",
                    (error, _utcnow(), list(model_ids)),
                )
        except Exception as cleanup:  # must not mask the original error
            exc.add_note(f"marking models {list(model_ids)} failed also failed: {cleanup!r}")
            log.exception("could not mark models %s failed", list(model_ids))

    def reclaim_partitions(
        self, site: str, conn: psycopg.Connection[Any] | None = None
    ) -> list[str]:
        """Detach and drop the partitions of failed versions and of deleted (pruned) versions.

        ``DETACH … CONCURRENTLY`` takes no lock that blocks readers; a detach interrupted by a
        crash is finished (``FINALIZE``) by the next call. Reclaimers of all sites take turns
        (an advisory lock), each listing what is left when its turn comes, so two never race
        for one partition; a turn, or a detach waiting for long queries, gives up after
        ``reclaim_wait`` and leaves the rest to the next publish. Returns the partitions dropped.
        """
        if conn is None:
            with self._connect() as own:
                return self.reclaim_partitions(site, own)
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{self._reclaim_wait}s",))
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_RECLAIM_LOCK,))
        except psycopg.errors.LockNotAvailable:
            conn.execute("RESET lock_timeout")
            log.info("%s: another publish is reclaiming partitions; left to it", site)
            return []
        try:
            return self._reclaim(conn, site)
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_RECLAIM_LOCK,))
                conn.execute("RESET lock_timeout")

    def _reclaim(self, conn: psycopg.Connection[Any], site: str) -> list[str]:
        partitions = conn.execute(
            "SELECT c.relname, i.inhdetachpending FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'recommendation'::regclass"
        ).fetchall()
        by_id = {
            int(match.group(1)): (name, bool(pending))
            for name, pending in partitions
            if (match := _PARTITION.match(name))
        }
        if not by_id:
            return []
        status = dict(
            conn.execute(
                "SELECT id, status FROM model WHERE id = ANY(%s)", (list(by_id),)
            ).fetchall()
        )
        doomed = [m for m in sorted(by_id) if status.get(m, "deleted") in ("deleted", "failed")]
        dropped = []
        for model_id in doomed:
            name, pending = by_id[model_id]
            table = sql.Identifier(name)
            mode = sql.SQL("FINALIZE" if pending else "CONCURRENTLY")
            try:
                conn.execute(
                    sql.SQL("ALTER TABLE recommendation DETACH PARTITION {} {}").format(table, mode)
                )
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            except psycopg.errors.LockNotAvailable:
                log.info("%s: %s is still being read; dropped by a later publish", site, name)
                break
            dropped.append(name)
        return dropped

    def _reclaim_partitions_quietly(
        self, site: str, conn: psycopg.Connection[Any] | None = None
    ) -> None:
        """Reclaiming space must never fail a publish: what is left is retried next time."""
        try:
            dropped = self.reclaim_partitions(
                site, conn if conn is not None and not conn.broken else None
            )
        except psycopg.Error as exc:
            log.warning(
                "%s: reclaiming old partitions failed (retried next publish): %s", site, exc
            )
        else:
            if dropped:
                log.info("%s: dropped partitions %s", site, dropped)


# -- migrations --------------------------------------------------------------------------------


def apply_migrations(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations``; returns their versions.

    One transaction under an advisory lock: two processes opening a new database at once apply
    each migration exactly once, and a broken migration leaves nothing behind (DDL is
    transactional in Postgres).
    """
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, script in migration_files("postgres"):
            if version in done:
                continue
            conn.execute(cast(Any, script))  # a script without parameters may hold statements
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            log.debug("applied migration %s", name)
            applied.append(version)
    return applied


# -- helpers -----------------------------------------------------------------------------------


def _timestamps(values: pd.Series, name: str, nullable: bool) -> list[dt.datetime | None]:
    """A timestamp column (datetimes or ISO text; naive means UTC) as aware UTC datetimes."""
    parsed = _utc_column(values, name, nullable=nullable)
    return [None if pd.isna(v) else v.to_pydatetime() for v in parsed.tolist()]
