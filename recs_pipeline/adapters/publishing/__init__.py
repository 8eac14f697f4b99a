"""The publisher: serving tables whose recommendation lists change version atomically.

Every run writes a new *model version* per model type (user, article, popular) next to the one
being served, and only then swaps the two in one short transaction, so a reader always sees one
complete version, never a half-written one (see ``base`` for the lifecycle).

Two backends share the lifecycle, the validation and the table shapes:

- ``SqlitePublisher`` (``sqlite:///path``): the embedded zero-setup default.
- ``PostgresPublisher`` (``postgresql://…``): deployments; binary COPY, one partition per model
  version, per-site advisory locks.
"""

from __future__ import annotations

from recs_pipeline.adapters.publishing.base import (
    ABANDONED_ERROR,
    ARTICLE_COLUMNS,
    MODEL_TYPES,
    POPULAR_SOURCE,
    RECOMMENDATION_COLUMNS,
    SERVED_COLUMNS,
    ModelStatus,
    ModelType,
    ModelVersion,
    Publisher,
    RecommendationBatch,
    RecommendationValidationError,
    migration_files,
)
from recs_pipeline.adapters.publishing.postgres import PostgresPublisher, redact_url
from recs_pipeline.adapters.publishing.sqlite import (
    SERVING_QUERY,
    SqlitePublisher,
    apply_migrations,
)

__all__ = [
    "ABANDONED_ERROR",
    "ARTICLE_COLUMNS",
    "MODEL_TYPES",
    "POPULAR_SOURCE",
    "RECOMMENDATION_COLUMNS",
    "SERVED_COLUMNS",
    "SERVING_QUERY",
    "ModelStatus",
    "ModelType",
    "ModelVersion",
    "PostgresPublisher",
    "Publisher",
    "RecommendationBatch",
    "RecommendationValidationError",
    "SqlitePublisher",
    "apply_migrations",
    "is_postgres_url",
    "migration_files",
    "publisher_from_url",
    "redact_url",
]

_EXPECTED = "expected sqlite:///path/to/file.sqlite or postgresql://user@host:port/database"


def is_postgres_url(url: str) -> bool:
    """``postgresql://``, ``postgres://`` or ``postgresql+driver://``."""
    scheme = url.partition("://")[0].lower()
    return scheme.split("+", 1)[0] in ("postgresql", "postgres")


def publisher_from_url(url: str) -> Publisher:
    """Build a publisher from a database URL (SQLAlchemy's spelling, so configs look familiar).

    ``sqlite:///relative/path.sqlite`` is relative to the working directory and
    ``sqlite:////absolute/path.sqlite`` is absolute. In-memory databases are refused: every
    operation opens its own connection, which would see a fresh empty database each time.
    ``postgresql://user:password@host:port/database`` (``postgres://`` and a ``+driver`` suffix
    are accepted too) goes to Postgres; the URL is never echoed, as it may hold a password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {redact_url(url)!r} ({_EXPECTED})")
    if is_postgres_url(url):
        return PostgresPublisher(url)
    if scheme.lower().split("+", 1)[0] != "sqlite":
        raise ValueError(f"unsupported publisher URL scheme {scheme!r}://; {_EXPECTED}")
    if not rest or rest == "/" or rest == "/:memory:":
        raise ValueError(
            f"in-memory SQLite is not supported by the publisher (each operation opens its own "
            f"connection); {_EXPECTED}"
        )
    if not rest.startswith("/"):
        raise ValueError(f"SQLite URLs have no host: {redact_url(url)!r}; {_EXPECTED}")
    path = rest[1:]
    if "?" in path:
        raise ValueError(f"SQLite URL options are not supported: {redact_url(url)!r}; {_EXPECTED}")
    return SqlitePublisher(path)
