"""Day-partitioned DataFrames as Postgres tables: what analysts query next to the serving tables.

A table holds one asset of one site (``<schema>.<site>__<asset>``) with a ``date`` column. Writing
a set of days replaces exactly those days' rows in one transaction (delete, then binary COPY), so
a re-run or a backfill never duplicates and a reader sees the old rows of a day or the new ones.
Writers of one table are serialised by a transaction-level advisory lock (two runs deleting and
inserting the same day at once would otherwise both insert). The table is created from the
frame's columns when missing; columns a later frame adds are added (additive evolution only).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from recs_pipeline.adapters.publishing.postgres import connect, libpq_url, pg_text, redact_url
from recs_pipeline.core.schemas import DATE

_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]*$")


def postgres_type(series: pd.Series) -> str:
    """The column type for a pandas column (text when nothing narrower fits)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    return "text"


def _values(series: pd.Series, kind: str) -> list[Any]:
    """A column as Python values for COPY (missing values as None)."""
    missing = series.isna().to_numpy()
    if kind in ("timestamptz", "timestamp"):
        values: list[Any] = [None if pd.isna(v) else v.to_pydatetime() for v in series.tolist()]
        return values
    if kind == "text":
        # NUL cannot be stored in Postgres text: replaced by U+FFFD (``pg_text``).
        values = [
            None if m else pg_text(str(v)) for v, m in zip(series.tolist(), missing, strict=True)
        ]
        return values
    if kind == "double precision":
        array = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return [None if m else float(v) for v, m in zip(array.tolist(), missing, strict=True)]
    values = series.tolist()
    return [None if m else v for v, m in zip(values, missing, strict=True)]


def check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} is not a plain lower-case SQL identifier")
    return name


class PostgresTables:
    """Tables of day partitions in one schema of a Postgres database."""

    def __init__(self, url: str, schema: str = "analytics") -> None:
        self._conninfo = libpq_url(url)
        self.schema = check_identifier(schema, "schema")

    def __repr__(self) -> str:
        return f"PostgresTables({redact_url(self._conninfo)!r}, schema={self.schema!r})"

    @staticmethod
    def table_name(site: str, asset: str) -> str:
        return check_identifier(f"{site}__{asset}".replace("-", "_"), "table")

    def qualified(self, site: str, asset: str) -> str:
        return f"{self.schema}.{self.table_name(site, asset)}"

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with connect(self._conninfo, autocommit=True, application_name="recs_pipeline") as conn:
            yield conn

    def replace_days(self, site: str, asset: str, days: Sequence[str], frame: pd.DataFrame) -> int:
        """Replace the rows of ``days`` with ``frame`` (whose ``date`` values must be among
        them); returns the rows written."""
        if DATE not in frame.columns:
            raise ValueError(f"{site}/{asset}: a partitioned frame needs a `date` column")
        dates = frame[DATE].astype(str)
        unknown = set(dates.unique()) - set(days)
        if unknown:
            raise ValueError(f"{site}/{asset}: rows for days outside the run: {sorted(unknown)}")
        body = frame.drop(columns=[DATE])
        for column in body.columns:
            check_identifier(str(column), "column")
        kinds = {str(c): postgres_type(body[c]) for c in body.columns}
        table = sql.Identifier(self.schema, self.table_name(site, asset))
        day_values = [dt.date.fromisoformat(d) for d in days]
        columns = [DATE, *kinds]
        with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"recs_pipeline.table:{self.qualified(site, asset)}",),
            )
            self._ensure_table(cur, table, self.table_name(site, asset), kinds)
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(table, sql.Identifier(DATE)),
                (day_values,),
            )
            if len(frame):
                statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                    table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
                )
                data = [
                    [dt.date.fromisoformat(d) for d in dates.tolist()],
                    *(_values(body[c], kinds[str(c)]) for c in body.columns),
                ]
                with cur.copy(statement) as copy:
                    copy.set_types(["date", *kinds.values()])
                    for row in zip(*data, strict=True):
                        copy.write_row(row)
        return len(frame)

    def _ensure_table(
        self, cur: psycopg.Cursor[Any], table: sql.Identifier, name: str, kinds: dict[str, str]
    ) -> None:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        definitions = [
            sql.SQL("{} date NOT NULL").format(sql.Identifier(DATE)),
            *(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(k)) for c, k in kinds.items()),
        ]
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                table, sql.SQL(", ").join(definitions)
            )
        )
        cur.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{name}_date"), table, sql.Identifier(DATE)
            )
        )
        for column, kind in kinds.items():
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    table, sql.Identifier(column), sql.SQL(kind)
                )
            )

    def read_days(self, site: str, asset: str, days: Sequence[str]) -> pd.DataFrame | None:
        """The rows of ``days`` (``date`` as ``YYYY-MM-DD`` text, like the lake gives it);
        None when the table does not exist."""
        table = sql.Identifier(self.schema, self.table_name(site, asset))
        with self._connect() as conn, conn.cursor() as cur:
            exists = cur.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (self.qualified(site, asset),)
            ).fetchone()
            if not exists or not exists[0]:
                return None
            cur.execute(
                sql.SQL("SELECT * FROM {} WHERE {} = ANY(%s) ORDER BY {}").format(
                    table, sql.Identifier(DATE), sql.Identifier(DATE)
                ),
                ([dt.date.fromisoformat(d) for d in days],),
            )
            assert cur.description is not None
            names = [column.name for column in cur.description]
            type_codes = [column.type_code for column in cur.description]
            rows = cur.fetchall()
        frame = pd.DataFrame.from_records(rows, columns=names)
        frame[DATE] = frame[DATE].map(lambda d: d.isoformat()).astype("str")
        timestamptz = psycopg.adapters.types["timestamptz"].oid
        for name, type_code in zip(names, type_codes, strict=True):
            if type_code == timestamptz:
                frame[name] = pd.to_datetime(frame[name], utc=True)
        return frame

    def row_counts(self, site: str, asset: str) -> dict[str, int]:
        """Rows per day (for checks and tests)."""
        table = sql.Identifier(self.schema, self.table_name(site, asset))
        with self._connect() as conn:
            rows = conn.execute(
                sql.SQL("SELECT {}, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
                    sql.Identifier(DATE), table
                )
            ).fetchall()
        return {day.isoformat(): int(n) for day, n in rows}
