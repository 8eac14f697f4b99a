"""What every publisher shares: the model lifecycle's types, the protocol, row validation.

A version's life is ``pending`` (rows being written) then ``current`` (served) or ``stale`` (kept
for a rollback, then pruned), or ``failed`` (the run raised or crashed; kept for post-mortems,
then pruned). The backends (``sqlite``, ``postgres``) differ only in how they store, load and
lock; the rules and the validation of a batch live here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal, Protocol, cast, get_args

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


# -- helpers -----------------------------------------------------------------------------------


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
