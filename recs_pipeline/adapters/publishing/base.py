"""What every publisher shares: the model lifecycle's types, the protocol, row validation.

A version's life is ``pending`` (rows being written) then ``current`` (served) or ``stale`` (kept
for a rollback, then pruned), or ``failed`` (the run raised or crashed; kept for post-mortems,
then pruned). The backends (``sqlite``, ``postgres``) differ only in how they store, load and
lock; the rules, the validation of a batch and the reads (``SqlPublisher``) live here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar, Final, Literal, Protocol, cast, get_args

import numpy as np
import pandas as pd

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
#: The ``ON CONFLICT`` assignments of the article upsert's descriptive columns: each takes the
#: non-null value of whichever side was seen last, so re-loading an old day never overwrites a
#: newer title.
NEWEST_DESCRIPTION: Final = "\n".join(
    f"    {column} = CASE WHEN excluded.last_seen >= article.last_seen\n"
    f"        THEN coalesce(excluded.{column}, article.{column})\n"
    f"        ELSE coalesce(article.{column}, excluded.{column}) END,"
    for column in ("path", "title", "published_at")
)

_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Fixed-width UTC text: lexicographic order is time order, in SQL as well as in Python.
_TS_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%f+00:00"
_MAX_ERROR_CHARS: Final = 4000

log = logging.getLogger(__name__)


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


class SqlPublisher(ABC):
    """What both backends do the same way over the ``model`` and ``recommendation`` tables.

    The lifecycle's statements are written once, with ``?`` for each parameter; a backend
    whose driver spells parameters otherwise sets ``param_mark`` (``%s`` for psycopg). A
    backend supplies a connection whose ``execute(sql, params)`` returns a cursor (both sqlite3
    and psycopg do), its transactions and locks, how it loads a version's rows, its serving
    query, and the conversions to and from what its driver binds and returns.
    """

    #: How the driver marks a parameter.
    param_mark: ClassVar[str] = "?"
    #: The serving query: site, model type, source entity id, exclusions, limit.
    serving_query: ClassVar[str]
    #: Appended to the swap's read of the served version: a row lock, where there is one.
    lock_served: ClassVar[str] = ""

    @abstractmethod
    def _connect(self) -> AbstractContextManager[Any]:
        """A connection of its own for one operation (so an instance is safe across threads)."""
        ...

    @abstractmethod
    def _transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """A write transaction on ``conn``: committed when the block ends, else rolled back."""
        ...

    @abstractmethod
    def _publish(
        self,
        site: str,
        as_of: dt.datetime,
        batches: Sequence[RecommendationBatch],
        keep: int,
    ) -> list[ModelVersion]:
        """``publish`` once its arguments are checked and there is something to publish."""
        ...

    @abstractmethod
    def _bind_time(self, value: dt.datetime) -> Any:
        """An aware datetime as the ``model`` table stores it."""
        ...

    @abstractmethod
    def _bind_document(self, value: Mapping[str, Any]) -> Any:
        """Params or metrics as the ``model`` table stores them (JSON)."""
        ...

    @abstractmethod
    def _serving_snapshot(self, conn: Any) -> AbstractContextManager[Any]:
        """Where the served list and its popular fallback are read (one snapshot, if needed)."""
        ...

    @abstractmethod
    def _exclusions(self, article_ids: list[str]) -> Any:
        """The serving query's exclusion parameter for these (sorted, distinct) article ids."""
        ...

    def _bind_id(self, value: str) -> Any:
        """An entity id as the backend binds it (Postgres: NUL-safe text)."""
        return value

    @abstractmethod
    def _timestamp(self, value: Any) -> dt.datetime:
        """A timestamp of the ``model`` table, as the driver returns it, in UTC."""
        ...

    @abstractmethod
    def _document(self, value: Any) -> dict[str, Any]:
        """A JSON column of the ``model`` table, as the driver returns it."""
        ...

    def _sql(self, statement: str) -> str:
        return statement if self.param_mark == "?" else statement.replace("?", self.param_mark)

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
        type remain; a version deleted that way is returned as ``pruned``. If anything raises,
        this call's versions become ``failed`` with the error, what was served stays served, and
        the exception propagates.
        """
        _check_site(site)
        _aware(as_of, "as_of")
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        types = [b.model_type for b in batches]
        if len(set(types)) != len(types):
            raise ValueError(f"one batch per model type per publish, got {types}")
        if not batches:
            return []
        return self._publish(site, as_of, batches, keep)

    # -- reading -------------------------------------------------------------------------------

    def current(self, site: str, model_type: str) -> ModelVersion | None:
        with self._connect() as conn:
            row = conn.execute(
                self._sql(_CURRENT_VERSION), (site, _model_type(model_type))
            ).fetchone()
        return None if row is None else self._model_version(row)

    def versions(self, site: str, model_type: str | None = None) -> list[ModelVersion]:
        query = f"SELECT {_MODEL_FIELDS} FROM model WHERE site = ?"
        args: list[Any] = [site]
        if model_type is not None:
            query += " AND type = ?"
            args.append(_model_type(model_type))
        with self._connect() as conn:
            rows = conn.execute(self._sql(query + " ORDER BY id DESC"), args).fetchall()
        return [self._model_version(row) for row in rows]

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
        excluded = self._exclusions(sorted({str(a) for a in exclude}))
        with self._connect() as conn, self._serving_snapshot(conn):
            found = conn.execute(
                self.serving_query,
                (site, kind, self._bind_id(str(source_entity_id)), excluded, size),
            ).fetchall()
            if not found and kind == "user" and size > 0:
                found = conn.execute(
                    self.serving_query, (site, "popular", POPULAR_SOURCE, excluded, size)
                ).fetchall()
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(found) + 1, dtype=np.int64),
                "article_id": pd.Series([r[0] for r in found], dtype="str"),
                "score": np.array([r[1] for r in found], dtype=np.float64),
                "model_id": np.array([r[2] for r in found], dtype=np.int64),
            }
        )

    # -- shared steps of a publish ---------------------------------------------------------------

    def _version(self, conn: Any, model_id: int) -> ModelVersion:
        row = conn.execute(self._sql(_VERSION_BY_ID), (model_id,)).fetchone()
        if row is None:
            raise LookupError(f"model {model_id} vanished during the publish")
        return self._model_version(row)

    def _start_versions(
        self,
        conn: Any,
        site: str,
        as_of: dt.datetime,
        batches: Sequence[RecommendationBatch],
    ) -> list[int]:
        """Fail crash leftovers, then record this run's versions as ``pending`` (committed).

        Committing the pending rows first is what lets the next run see a crash: a version left
        ``pending`` while nobody holds the publish lock belongs to a run that died.
        """
        now = self._bind_time(_utcnow())
        ids = []
        with self._transaction(conn):
            for batch in batches:
                abandoned = conn.execute(
                    self._sql(_ABANDON_PENDING), (ABANDONED_ERROR, now, site, batch.model_type)
                ).rowcount
                if abandoned:
                    log.warning(
                        "%s/%s: marked %d abandoned pending version(s) failed",
                        site,
                        batch.model_type,
                        abandoned,
                    )
                row = conn.execute(
                    self._sql(_START_VERSION),
                    (
                        site,
                        batch.model_type,
                        self._bind_time(as_of),
                        self._bind_document(batch.params),
                        self._bind_document(batch.metrics),
                        now,
                    ),
                ).fetchone()
                ids.append(int(row[0]))
        return ids

    def _swap(
        self,
        conn: Any,
        site: str,
        as_of: dt.datetime,
        model_ids: Sequence[int],
        batches: Sequence[RecommendationBatch],
        keep: int,
    ) -> list[ModelVersion]:
        """Promote every batch and apply retention in one transaction (all or nothing).

        Returns the versions as promoted. A backfilled version older than the ``keep`` newest
        stale ones is pruned at once; it is returned with the status ``pruned`` so the caller
        still sees what happened to it. What a deleted version leaves behind goes with it
        (SQLite's cascade) or is reclaimed after the swap (Postgres' partitions).
        """
        now = self._bind_time(_utcnow())
        published: list[ModelVersion] = []
        with self._transaction(conn):
            for model_id, batch in zip(model_ids, batches, strict=True):
                served = conn.execute(
                    self._sql(_SERVED_VERSION + self.lock_served), (site, batch.model_type)
                ).fetchone()
                served_as_of = None if served is None else self._timestamp(served[1])
                promote = served_as_of is None or as_of >= served_as_of
                if promote and served is not None:
                    conn.execute(self._sql(_STALE), (served[0],))
                updated = conn.execute(
                    self._sql(_FINISH_PENDING),
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
                        as_of.isoformat(),
                        served_as_of.isoformat() if served_as_of else None,
                    )
                for status, order in (("stale", "as_of DESC, id DESC"), ("failed", "id DESC")):
                    conn.execute(
                        self._sql(_RETENTION.format(order=order)),
                        (site, batch.model_type, status, keep),
                    )
            marks = ",".join("?" * len(model_ids))
            remaining = {
                row[0]
                for row in conn.execute(
                    self._sql(f"SELECT id FROM model WHERE id IN ({marks})"), list(model_ids)
                )
            }
        return [
            version if version.id in remaining else dataclasses.replace(version, status="pruned")
            for version in published
        ]

    def _model_version(self, row: Sequence[Any]) -> ModelVersion:
        (id_, site, kind, status, as_of, rows, params, metrics, created, finished, error) = row
        return ModelVersion(
            id=int(id_),
            site=site,
            model_type=cast(ModelType, kind),
            status=cast(ModelStatus, status),
            as_of=self._timestamp(as_of),
            rows=int(rows),
            params=self._document(params),
            metrics=self._document(metrics),
            created_at=self._timestamp(created),
            finished_at=None if finished is None else self._timestamp(finished),
            error=error,
        )


_MODEL_FIELDS: Final = (
    "id, site, type, status, as_of, row_count, params, metrics, created_at, finished_at, error"
)
_CURRENT_VERSION: Final = (
    f"SELECT {_MODEL_FIELDS} FROM model WHERE site = ? AND type = ? AND status = 'current'"
)
_VERSION_BY_ID: Final = f"SELECT {_MODEL_FIELDS} FROM model WHERE id = ?"
_ABANDON_PENDING: Final = (
    "UPDATE model SET status = 'failed', error = ?, finished_at = ? "
    "WHERE site = ? AND type = ? AND status = 'pending'"
)
_START_VERSION: Final = (
    "INSERT INTO model (site, type, status, as_of, params, metrics, created_at) "
    "VALUES (?, ?, 'pending', ?, ?, ?, ?) RETURNING id"
)
_SERVED_VERSION: Final = (
    "SELECT id, as_of FROM model WHERE site = ? AND type = ? AND status = 'current'"
)
_STALE: Final = "UPDATE model SET status = 'stale' WHERE id = ?"
_FINISH_PENDING: Final = (
    "UPDATE model SET status = ?, finished_at = ? WHERE id = ? AND status = 'pending'"
)
#: Deletes a type's versions of one status beyond the newest ``keep`` (in ``order``).
_RETENTION: Final = (
    "DELETE FROM model WHERE id IN (SELECT id FROM ("
    "SELECT id, ROW_NUMBER() OVER (ORDER BY {order}) AS n FROM model "
    "WHERE site = ? AND type = ? AND status = ?) AS ranked WHERE n > ?)"
)


# -- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleRows:
    """An articles frame checked and split into the columns of the ``article`` table."""

    article_id: list[str]
    path: list[str | None]
    title: list[str | None]
    published_at: list[Any]
    first_seen: list[Any]
    last_seen: list[Any]

    def columns(self) -> tuple[list[Any], ...]:
        """The columns in the ``article`` table's order (after ``site``)."""
        return (
            self.article_id,
            self.path,
            self.title,
            self.published_at,
            self.first_seen,
            self.last_seen,
        )


def _article_rows(
    site: str,
    articles: pd.DataFrame,
    timestamps: Callable[[pd.Series, str, bool], list[Any]],
) -> ArticleRows | None:
    """Check an articles frame for ``upsert_articles``; None when it has no rows.

    ``timestamps(values, name, nullable)`` turns a timestamp column into what the backend binds.
    """
    _check_site(site)
    missing = [c for c in ARTICLE_COLUMNS[:3] if c not in articles.columns]
    if missing:
        raise ValueError(f"articles frame lacks columns {missing}")
    if articles.empty:
        return None
    ids = articles["article_id"]
    if ids.isna().any() or (ids.astype(str) == "").any():
        raise ValueError("articles frame has null or empty article_id values")
    first_seen = timestamps(articles["first_seen"], "first_seen", False)
    last_seen = timestamps(articles["last_seen"], "last_seen", False)
    published = (
        timestamps(articles["published_at"], "published_at", True)
        if "published_at" in articles.columns
        else [None] * len(articles)
    )
    return ArticleRows(
        article_id=ids.astype(str).tolist(),
        path=_optional_text(articles, "path"),
        title=_optional_text(articles, "title"),
        published_at=published,
        first_seen=first_seen,
        last_seen=last_seen,
    )


def _utc_column(values: pd.Series, name: str, *, nullable: bool) -> pd.Series:
    """A timestamp column (datetimes or ISO text; naive means UTC) parsed to UTC."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    if not nullable and parsed.isna().any():
        raise ValueError(f"articles frame has null {name} values")
    return parsed


def _log_written(model_id: int, kind: ModelType, rows: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    log.info(
        "model %d (%s): wrote %d rows in %.2fs (%.0f rows/s)",
        model_id,
        kind,
        rows,
        elapsed,
        rows / elapsed if elapsed > 0 else float("inf"),
    )


def _validated_frame(batch: RecommendationBatch) -> pd.DataFrame:
    """Check a batch's rows; returns them as columns ``s`` (source entity), ``r`` (rank),
    ``a`` (recommended article), ``x`` (score).

    Rows are sorted by (source entity, rank): that is the tables' key order, so SQLite appends
    to its B-tree instead of inserting at random places, and Postgres builds its index from
    presorted input.
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
    same_source = keyed["s"] == keyed["s"].shift()
    # Frames usually arrive in (source, rank) order already: checking is cheaper than sorting.
    in_order = keyed["s"].is_monotonic_increasing and bool(
        (~same_source | (keyed["r"].diff() > 0)).all()
    )
    if not in_order:
        keyed = keyed.sort_values(["s", "r"], kind="stable", ignore_index=True)
        same_source = keyed["s"] == keyed["s"].shift()
    # Sorted, so a duplicate (source, rank) pair sits right after its twin.
    duplicated = same_source & (keyed["r"].diff() == 0)
    if duplicated.any():
        example = keyed.loc[duplicated, ["s", "r"]].iloc[0].tolist()
        raise RecommendationValidationError(
            f"{kind} batch has {int(duplicated.sum())} duplicate (source_entity_id, rank) "
            f"pairs, e.g. {example}"
        )
    return keyed


def _validated_rows(
    batch: RecommendationBatch,
) -> tuple[list[str], list[int], list[str], list[float]]:
    """``_validated_frame``'s columns as plain Python lists, ready to bind."""
    keyed = _validated_frame(batch)
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


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    """Naive datetimes are refused rather than guessed."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


def _ts_text(value: dt.datetime, name: str) -> str:
    """UTC text in the one fixed format."""
    return _aware(value, name).astimezone(dt.UTC).strftime(_TS_FORMAT)


def _parse_ts(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _ts_column(values: pd.Series, name: str, nullable: bool) -> list[str | None]:
    """A timestamp column (datetimes or ISO text; naive means UTC) as fixed-format UTC text."""
    text = _utc_column(values, name, nullable=nullable).dt.strftime(_TS_FORMAT)
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


def migration_files(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """A backend's packaged migrations as ``(version, file name, sql)``, in version order.

    Files are ``NNNN_name.sql`` under ``adapters/migrations/<dialect>/``; a version is applied
    once and recorded in ``schema_migrations``.
    """
    folder = resources.files("recs_pipeline.adapters").joinpath("migrations").joinpath(dialect)
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
