"""The lake IO manager with day streams: written as produced, every run day, nothing outside.

No ``from __future__ import annotations`` here: Dagster reads the assets' annotations.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.core.day_frames import DayFrames
from recs_pipeline.resources import LakeIOManager

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


def rows(day: str, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"date": [day] * n, "article_id": [f"a{i}" for i in range(n)], "views": range(1, n + 1)}
    )


def stored(name: str, **ins: dg.AssetIn) -> dg.AssetsDefinition:
    """Decorator arguments every test asset shares (``site/<name>``, day partitions, the lake)."""
    return dg.asset(  # type: ignore[return-value]
        key=["site", name],
        partitions_def=PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager",
        ins=ins,
    )


def run(
    assets: list[dg.AssetsDefinition], lake_url: str, days: list[str]
) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(assets=assets, resources={"lake_io_manager": LakeIOManager(url=lake_url)})
    tags = {
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1],
    }
    with dg.instance_for_test() as instance:
        return defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, tags=tags, raise_on_error=False
        )


def step_error(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "the run was expected to fail"
    return str(failures[0].step_failure_data.error)


def test_a_stream_writes_each_day_as_produced_and_an_empty_day_too(tmp_path: Path) -> None:
    lake_url = str(tmp_path / "lake")
    lake = lake_from_url(lake_url)
    written_before: dict[str, list[str]] = {}

    def produce(day: str, n: int) -> pd.DataFrame:
        # What is in the lake when the day is produced: the days before it are already written.
        written_before[day] = lake.days("site", "counts")
        return rows(day, n)

    @stored("counts")
    def counts(context: dg.AssetExecutionContext) -> DayFrames:
        days = sorted(context.partition_keys)
        # The middle day is not produced at all: it must still get its (empty) partition.
        return DayFrames(
            {day: (lambda day=day: produce(day, 2)) for day in days if day != DAYS[1]},
            summary=lambda: {"days_produced": len(written_before)},
        )

    @stored("per_day", counts=dg.AssetIn(["site", "counts"]))
    def per_day(counts: DayFrames) -> DayFrames:
        assert isinstance(counts, DayFrames)
        # Lazily loaded input: every run day has a partition, the empty one included.
        assert counts.days == DAYS

        def tens(day: str) -> pd.DataFrame:
            frame = counts.load(day)
            return frame.assign(views=frame["views"] * 10)

        return DayFrames({day: (lambda day=day: tens(day)) for day in counts.days})

    @stored("together", counts=dg.AssetIn(["site", "counts"]))
    def together(counts: pd.DataFrame) -> pd.DataFrame:
        # Not opted in: one frame of every day, as before.
        assert isinstance(counts, pd.DataFrame)
        return counts.groupby("date", as_index=False)["views"].sum()

    result = run([counts, per_day, together], lake_url, DAYS)
    assert result.success
    # Day 3 was produced once day 1 was written; the day not produced is written at the end.
    assert written_before == {DAYS[0]: [], DAYS[2]: [DAYS[0]]}
    assert lake.days("site", "counts") == DAYS
    empty = lake.read_partition("site", "counts", DAYS[1])
    assert empty is not None and empty.empty
    assert list(empty.columns) == ["date", "article_id", "views"]  # the other days' columns
    assert [lake.row_count("site", "per_day", day) for day in DAYS] == [2, 0, 2]
    tens = lake.read_partitions("site", "per_day", DAYS)
    assert tens is not None and tens["views"].tolist() == [10, 20, 10, 20]
    sums = lake.read_partitions("site", "together", DAYS)
    assert sums is not None and sums["views"].tolist() == [3, 3]
    materialised = result.asset_materializations_for_node("site__counts")
    assert materialised and materialised[0].metadata["days_produced"].value == 2


def test_rows_of_a_day_outside_the_run_are_refused(tmp_path: Path) -> None:
    lake_url = str(tmp_path / "lake")

    @stored("counts")
    def counts(context: dg.AssetExecutionContext) -> DayFrames:
        return DayFrames({day: (lambda day=day: rows(day, 1)) for day in [*DAYS, "2026-11-04"]})

    result = run([counts], lake_url, DAYS)
    assert not result.success
    assert "rows for days outside the run: ['2026-11-04']" in step_error(result)
    lake = lake_from_url(lake_url)
    # The run's days were written before the stream reached the stray one; nothing outside.
    assert lake.days("site", "counts") == DAYS
    assert not lake.has_partition("site", "counts", "2026-11-04")


def test_a_frame_holding_another_days_rows_is_refused(tmp_path: Path) -> None:
    lake_url = str(tmp_path / "lake")

    @stored("counts")
    def counts() -> DayFrames:
        return DayFrames({DAYS[0]: lambda: pd.concat([rows(DAYS[0], 1), rows("2026-10-31", 1)])})

    result = run([counts], lake_url, DAYS[:1])
    assert not result.success
    assert "rows for days outside the run: ['2026-10-31']" in step_error(result)
    assert not lake_from_url(lake_url).has_partition("site", "counts", DAYS[0])


def test_a_day_given_twice_is_refused(tmp_path: Path) -> None:
    @stored("counts")
    def counts() -> Any:
        # Plain (day, frame) pairs; a returned generator would be read by Dagster as events.
        return [(DAYS[0], rows(DAYS[0], 1)), (DAYS[0], rows(DAYS[0], 2))]

    result = run([counts], str(tmp_path / "lake"), DAYS[:1])
    assert not result.success
    assert "day 2026-11-01 was given twice" in step_error(result)


def test_a_stream_of_one_run_equals_a_run_per_day(tmp_path: Path) -> None:
    """The same asset over a range in one run, and day by day (twice): the same partitions."""
    sizes = {DAYS[0]: 3, DAYS[1]: 0, DAYS[2]: 1}

    @stored("counts")
    def counts(context: dg.AssetExecutionContext) -> DayFrames:
        return DayFrames(
            {day: (lambda day=day: rows(day, sizes[day])) for day in context.partition_keys}
        )

    ranged_url, daily_url = str(tmp_path / "ranged"), str(tmp_path / "daily")
    assert run([counts], ranged_url, DAYS).success
    for day in [*DAYS, DAYS[0]]:  # the first day twice: a re-run gives the same partition
        assert run([counts], daily_url, [day]).success
    for day in DAYS:
        one = lake_from_url(ranged_url).partition_path("site", "counts", day)
        other = lake_from_url(daily_url).partition_path("site", "counts", day)
        assert Path(one).read_bytes() == Path(other).read_bytes(), day
