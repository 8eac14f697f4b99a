"""Rows per second published to Postgres: the publisher against a bare binary COPY and to_sql.

All three start from the same DataFrame of recommendation rows, in the same run, on the same
server:

- ``publisher``: ``PostgresPublisher.publish`` of one user version, end to end (validation,
  the pending row, binary COPY into the version's partition, its index, the attach, the swap,
  retention);
- ``bare_copy``: the same rows with ``COPY … FROM STDIN (FORMAT BINARY)`` through psycopg's
  ``write_row`` into a table with no index, constraint or partition: the usual way to bulk-load;
- ``bare_copy_preencoded``: the same COPY with the binary stream encoded before the clock starts
  (the publisher's own encoder): only the server's work is timed, the strictest baseline;
- ``to_sql``: ``DataFrame.to_sql`` through SQLAlchemy (psycopg 3), on a sample of the rows
  (it is ~20x slower), for scale.

Usage: ``.venv/bin/python benchmarks/publish_postgres.py [--users 100000] [--per-user 10]
[--repeats 3] [--url postgresql://…]``. Without ``--url`` (or ``RECS_BENCH_PG_DSN``) it uses the
server on 127.0.0.1:5432. Each run works in a scratch database it creates and drops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import psycopg

from recs_pipeline.adapters.publishing import PostgresPublisher, RecommendationBatch, redact_url
from recs_pipeline.adapters.publishing.pgcopy import recommendation_copy_data

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def recommendation_rows(users: int, per_user: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = users * per_user
    return pd.DataFrame(
        {
            "source_entity_id": np.repeat([f"user-{i:08d}" for i in range(users)], per_user),
            "rank": np.tile(np.arange(1, per_user + 1, dtype=np.int64), users),
            "recommended_article_id": [f"article-{a}" for a in rng.integers(0, 50_000, n)],
            "score": rng.random(n),
        }
    )


def bare_copy(url: str, frame: pd.DataFrame) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE bare_recommendation")
        columns = [frame[c].tolist() for c in frame.columns]
        model_ids = [1] * len(frame)
        with cur.copy(
            "COPY bare_recommendation (model_id, source_entity_id, rank, recommended_article_id, "
            "score) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "text", "float8"])
            for row in zip(model_ids, *columns, strict=True):
                copy.write_row(row)


def bare_copy_preencoded(url: str, blocks: list[bytes]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE bare_recommendation")
        with cur.copy("COPY bare_recommendation FROM STDIN (FORMAT BINARY)") as copy:
            for block in blocks:
                copy.write(block)


def to_sql(url: str, frame: pd.DataFrame) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        frame.to_sql("to_sql_recommendation", engine, if_exists="replace", index=False)
    finally:
        engine.dispose()


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("RECS_BENCH_PG_DSN", DEFAULT_URL))
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--to-sql-rows", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    frame = recommendation_rows(args.users, args.per_user)
    sample = frame.iloc[: args.to_sql_rows]
    database = f"recs_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    url = urlunsplit(urlsplit(args.url)._replace(path=f"/{database}"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bare_recommendation (model_id bigint, source_entity_id text, "
                "rank integer, recommended_article_id text, score double precision)"
            )
        publisher = PostgresPublisher(url)
        keyed = frame.set_axis(["s", "r", "a", "x"], axis=1)
        blocks = list(recommendation_copy_data(1, keyed))
        batch = RecommendationBatch("user", frame)
        actions: dict[str, Callable[[dt.datetime], object]] = {
            "publisher": lambda as_of: publisher.publish("bench", as_of, [batch], keep=1),
            "bare_copy": lambda _: bare_copy(url, frame),
            "bare_copy_preencoded": lambda _: bare_copy_preencoded(url, blocks),
        }
        rates: dict[str, list[float]] = {name: [] for name in [*actions, "to_sql"]}
        for repeat in range(args.repeats):
            as_of = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=repeat)
            # Rotate the order so no side always runs on a warmer (or busier) server.
            names = list(actions)
            names = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in names:
                seconds = timed(actions[name], as_of)
                rates[name].append(len(frame) / seconds)
            rates["to_sql"].append(len(sample) / timed(to_sql, url, sample))
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "server": redact_url(args.url),
        "rows": len(frame),
        "to_sql_rows": len(sample),
        "repeats": args.repeats,
        "median_rows_per_s": {name: round(value) for name, value in medians.items()},
        "publisher_vs_bare_copy": round(medians["publisher"] / medians["bare_copy"], 3),
        "publisher_vs_bare_copy_preencoded": round(
            medians["publisher"] / medians["bare_copy_preencoded"], 3
        ),
        "publisher_vs_to_sql": round(medians["publisher"] / medians["to_sql"], 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(frame):,} rows, {args.repeats} repeats (to_sql: {len(sample):,} rows)")
    for name, value in medians.items():
        print(f"  {name:<21} {value:>12,.0f} rows/s (median)")
    print(f"  publisher / bare COPY (write_row)  = {result['publisher_vs_bare_copy']:.2f}")
    print(
        f"  publisher / bare COPY (pre-encoded) = {result['publisher_vs_bare_copy_preencoded']:.2f}"
    )
    print(f"  publisher / to_sql    = {result['publisher_vs_to_sql']:.1f}x")


if __name__ == "__main__":
    main()
