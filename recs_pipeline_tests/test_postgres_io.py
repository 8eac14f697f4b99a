"""The Postgres IO manager: tables from frames, exact replacement of a run's days, loading back."""

import dagster as dg
import pandas as pd
import psycopg

from recs_pipeline.adapters.postgres_tables import PostgresTables
from recs_pipeline.postgres_io import PostgresIOManager

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
SINGLE_RUN = dg.BackfillPolicy.single_run()


def day_frame(day: str, n: int, version: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": day,
            "user_id": [f"u{i}" for i in range(n)],
            "rank": list(range(1, n + 1)),
            "score": [version + i / 10 for i in range(n)],
            "from_als": [i % 2 == 0 for i in range(n)],
            "ts": pd.to_datetime([f"{day}T0{i % 10}:00Z" for i in range(n)], utc=True),
            "note": [None if i == 0 else f"v{version}" for i in range(n)],
        }
    )


def build(version: int, url: str) -> dg.Definitions:
    @dg.asset(
        key=["site", "scores"],
        partitions_def=PARTITIONS,
        backfill_policy=SINGLE_RUN,
        io_manager_key="pg_io",
    )
    def scores(context: dg.AssetExecutionContext) -> pd.DataFrame:
        # Day 2 has no rows: the run still owns it, so old rows of day 2 must go.
        frames = [
            day_frame(day, 3, version)
            for day in sorted(context.partition_keys)
            if day != "2026-11-02"
        ]
        return pd.concat(frames, ignore_index=True)

    @dg.asset(
        key=["site", "best"],
        partitions_def=PARTITIONS,
        backfill_policy=SINGLE_RUN,
        ins={"scores": dg.AssetIn(["site", "scores"])},
        io_manager_key="pg_io",
    )
    def best(scores: pd.DataFrame) -> pd.DataFrame:
        return scores.loc[scores["rank"] == 1, ["date", "user_id", "score"]]

    return dg.Definitions(assets=[scores, best], resources={"pg_io": PostgresIOManager(url=url)})


def run(defs: dg.Definitions, first: str, last: str) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        return job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
        )


def test_runs_replace_exactly_their_days(pg_url: str) -> None:
    tables = PostgresTables(pg_url)
    # A first load of day 2 that the range run must clear.
    tables.replace_days("site", "scores", ["2026-11-02"], day_frame("2026-11-02", 5, 0))

    assert run(build(1, pg_url), "2026-11-01", "2026-11-03").success
    assert tables.row_counts("site", "scores") == {"2026-11-01": 3, "2026-11-03": 3}
    assert tables.row_counts("site", "best") == {"2026-11-01": 1, "2026-11-03": 1}

    # The same range again (a backfill re-run): identical counts, nothing duplicated.
    assert run(build(1, pg_url), "2026-11-01", "2026-11-03").success
    assert tables.row_counts("site", "scores") == {"2026-11-01": 3, "2026-11-03": 3}

    # One day re-run with new data: only that day changes.
    assert run(build(2, pg_url), "2026-11-03", "2026-11-03").success
    back = tables.read_days("site", "scores", ["2026-11-01", "2026-11-03"])
    assert back is not None
    assert back.groupby("date")["score"].min().to_dict() == {"2026-11-01": 1.0, "2026-11-03": 2.0}
    best = tables.read_days("site", "best", ["2026-11-03"])
    assert best is not None and best["score"].tolist() == [2.0]


def test_table_is_created_from_the_frame_and_round_trips(pg_url: str) -> None:
    tables = PostgresTables(pg_url, schema="analytics")
    frame = day_frame("2026-11-05", 4, 1)
    assert tables.replace_days("site", "scores", ["2026-11-05"], frame) == 4
    with psycopg.connect(pg_url) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'analytics' AND table_name = 'site__scores'"
            ).fetchall()
        )
    assert types == {
        "date": "date",
        "user_id": "text",
        "rank": "bigint",
        "score": "double precision",
        "from_als": "boolean",
        "ts": "timestamp with time zone",
        "note": "text",
    }
    back = tables.read_days("site", "scores", ["2026-11-05"])
    assert back is not None
    pd.testing.assert_frame_equal(
        back[frame.columns.tolist()], frame, check_dtype=False, check_exact=False
    )
    # A later frame with an extra column: the column is added, old rows get NULL.
    wider = day_frame("2026-11-06", 1, 1).assign(extra=7)
    tables.replace_days("site", "scores", ["2026-11-06"], wider)
    both = tables.read_days("site", "scores", ["2026-11-05", "2026-11-06"])
    assert both is not None and both["extra"].isna().sum() == 4 and both["extra"].iloc[-1] == 7


def test_loading_a_missing_table_gives_an_empty_frame(pg_url: str) -> None:
    assert PostgresTables(pg_url).read_days("site", "nothing", ["2026-11-01"]) is None
