"""Ingestion and models over a range in one run give the partitions of day-by-day runs.

Raw events, engagement and interactions are streamed a day at a time through the lake IO
manager; a single-run backfill must not change what any day's partition holds, and re-running a
day must give the same partition again.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.assets.ingestion import build_ingestion_assets
from recs_pipeline.assets.models import build_model_assets
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline.resources import Clock, LakeIOManager, LakeResource
from recs_pipeline_tests.conftest import site_config

FIRST = dt.date(2026, 11, 1)
DAYS = [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(4)]
STREAMED = ("raw_events", "quarantined_events", "engagement", "interactions")
FRAMES = (*STREAMED, "pages", "popular_articles", "similar_articles")


def materialise(
    assets: list[dg.AssetsDefinition], lake_url: str, days: list[str]
) -> dict[str, dict[str, dg.MetadataValue]]:
    """One run over ``days``; the metadata of each asset's first materialisation (its first
    day: the run's totals, with that day's own numbers where the asset records them)."""
    resources = {
        "lake_io_manager": LakeIOManager(url=lake_url),
        "lake": LakeResource(url=lake_url),
        "clock": Clock(),
    }
    tags = {
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1],
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=resources, instance=instance, tags=tags)
        assert result.success
        found: dict[str, dict[str, dg.MetadataValue]] = {}
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            if materialization.partition == days[0]:
                found.setdefault(materialization.asset_key.path[-1], dict(materialization.metadata))
        return found


def test_a_range_in_one_run_writes_what_runs_day_by_day_write(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=FIRST,
            days=len(DAYS),
            users=300,
            articles_per_day=20,
            events_per_day=3000,
            malformed_share=0.01,
            seed=23,
        ),
        landing,
    )
    # The runs also cover the day after the landing files end: a run day without events still
    # gets its partitions, the same whether it is run in the range or on its own.
    site = site_config("rangesite", landing)
    assets = [*build_ingestion_assets(site), *build_model_assets(site)]
    ranged_url, daily_url = str(tmp_path / "ranged"), str(tmp_path / "daily")
    extra = (FIRST + dt.timedelta(days=len(DAYS))).isoformat()

    meta = materialise(assets, ranged_url, [*DAYS, extra])
    for day in [*DAYS, extra, DAYS[1]]:  # day 2 twice: a re-run replaces it with the same
        materialise(assets, daily_url, [day])

    ranged, daily = lake_from_url(ranged_url), lake_from_url(daily_url)
    for asset in FRAMES:
        assert ranged.days(site.name, asset) == [*DAYS, extra], asset
        for day in [*DAYS, extra]:
            one = ranged.read_partition(site.name, asset, day)
            other = daily.read_partition(site.name, asset, day)
            assert one is not None and other is not None
            pd.testing.assert_frame_equal(one, other, obj=f"{asset} {day}")
    for asset in STREAMED:  # written from the same day frame: the same bytes
        for day in [*DAYS, extra]:
            path = ranged.partition_path(site.name, asset, day)
            assert (
                Path(path).read_bytes()
                == Path(daily.partition_path(site.name, asset, day)).read_bytes()
            ), f"{asset} {day}"
    assert ranged.row_count(site.name, "raw_events", extra) == 0
    assert ranged.artifacts(site.name, "als_model", DAYS[-1]) == daily.artifacts(
        site.name, "als_model", DAYS[-1]
    )

    # Metadata of the streamed outputs covers the whole range, as one frame's did; a day's
    # own numbers (rows, line accounting, quarantine, distinct users and articles) are on its
    # own partition.
    events = ranged.read_partitions(site.name, "raw_events", DAYS)
    engagement = ranged.read_partitions(site.name, "engagement", DAYS)
    quarantine = ranged.read_partitions(site.name, "quarantined_events", DAYS)
    assert events is not None and engagement is not None and quarantine is not None
    first_quarantine = quarantine[quarantine["date"] == DAYS[0]]
    raw = meta["raw_events"]
    assert raw["dagster/row_count"].value == int((events["date"] == DAYS[0]).sum())
    assert raw["lines_unaccounted"].value == 0
    # Distinct readers and articles are the day's own (the UI plots them per partition).
    first_events = events[events["date"] == DAYS[0]]
    assert raw["users"].value == first_events["user_id"].nunique() < events["user_id"].nunique()
    assert raw["articles"].value == first_events["article_id"].nunique()
    assert raw["page_views"].value == int((events["event_name"] == "page_view").sum())
    assert meta["quarantined_events"]["dagster/row_count"].value == len(first_quarantine) > 0
    first_engagement = engagement[engagement["date"] == DAYS[0]]
    assert meta["engagement"]["users"].value == first_engagement["user_id"].nunique()
    assert first_engagement["user_id"].nunique() < engagement["user_id"].nunique()
    assert meta["engagement"]["median_dwell_seconds"].value == float(
        first_engagement["dwell_seconds"].median()
    )
    interactions = ranged.read_partitions(site.name, "interactions", [*DAYS, extra])
    assert interactions is not None
    first_interactions = interactions[interactions["date"] == DAYS[0]]
    assert meta["interactions"]["dagster/row_count"].value == len(first_interactions) > 0
    assert meta["interactions"]["articles"].value == first_interactions["article_id"].nunique()
