"""Issue 12, item 5: a landing area that does not exist is an error naming it, and a lake
partition with events is never replaced by an empty one without the explicit run config flag."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.sources import event_source
from recs_pipeline.assets.ingestion import build_ingestion_assets
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline.resources import Clock, LakeIOManager, LakeResource
from recs_pipeline_tests.conftest import site_config
from recs_pipeline_tests.servers import Bucket

FIRST = dt.date(2026, 11, 1)
DAY = "2026-11-02"
NOW = pd.Timestamp("2026-12-01", tz="UTC")


def ingest(
    site: SiteConfig, lake_url: str, run_config: dict[str, object] | None = None
) -> dg.ExecuteInProcessResult:
    assets = build_ingestion_assets(site)
    resources = {
        "lake_io_manager": LakeIOManager(url=lake_url),
        "lake": LakeResource(url=lake_url),
        "clock": Clock(),
    }
    selection = [
        dg.AssetKey([site.name, "raw_events"]),
        dg.AssetKey([site.name, "quarantined_events"]),
    ]
    with dg.instance_for_test() as instance:
        return dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            partition_key=DAY,
            selection=selection,
            run_config=run_config,
            raise_on_error=False,
        )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "the run was expected to fail"
    info = failures[0].step_failure_data.error
    assert info is not None
    return info.to_string()


@pytest.mark.parametrize("fmt", ["snowplow", "csv", "mind", "ga4"])
def test_a_missing_landing_folder_is_an_error_naming_it(tmp_path: Path, fmt: str) -> None:
    missing = tmp_path / "no-such-landing"
    events: dict[str, object] = {"format": fmt, "location": str(missing)}
    if fmt == "csv":
        events["columns"] = {"user_id": "u", "article_id": "a", "timestamp": "t"}
    config = SiteConfig.model_validate(
        {"name": "s", "timezone": "UTC", "start_date": "2026-11-01", "events": events}
    )
    source = event_source(config)
    with pytest.raises(FileNotFoundError, match="no-such-landing"):
        list(source.read_days([dt.date(2026, 11, 2)], now=NOW))
    with pytest.raises(FileNotFoundError, match="no-such-landing"):
        source.list_files()

    missing.mkdir()  # an existing empty folder is fine: nothing landed yet
    [(_, day)] = list(event_source(config).read_days([dt.date(2026, 11, 2)], now=NOW))
    assert day.events.empty and day.lines_read == 0


def test_a_missing_bucket_is_an_error_but_an_empty_prefix_is_not(s3_bucket: Bucket) -> None:
    def source_at(location: str) -> object:
        config = SiteConfig.model_validate(
            {
                "name": "s",
                "timezone": "UTC",
                "start_date": "2026-11-01",
                "events": {"format": "snowplow", "location": location},
            }
        )
        return event_source(config)

    with pytest.raises(FileNotFoundError, match="no-such-bucket-12"):
        source_at("s3://no-such-bucket-12/landing").list_files()  # type: ignore[attr-defined]
    assert source_at(f"s3://{s3_bucket.name}/empty").list_files() == []  # type: ignore[attr-defined]


def test_an_emptied_or_vanished_landing_area_never_wipes_the_lake(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=FIRST,
            days=3,
            users=100,
            articles_per_day=10,
            events_per_day=800,
            malformed_share=0.0,
            seed=3,
        ),
        landing,
    )
    site = site_config("guarded", landing)
    lake_url = str(tmp_path / "lake")
    lake = lake_from_url(lake_url)
    assert ingest(site, lake_url).success
    before = lake.row_count("guarded", "raw_events", DAY)
    assert before > 0
    stored = lake.read_partition("guarded", "raw_events", DAY)

    # The landing folder is gone: the run fails naming it, the lake keeps its events.
    moved = tmp_path / "moved"
    landing.rename(moved)
    result = ingest(site, lake_url)
    assert not result.success
    assert str(landing) in failure_text(result)
    assert lake.row_count("guarded", "raw_events", DAY) == before

    # The folder exists but is empty: no event for a day that has some is refused too.
    landing.mkdir()
    result = ingest(site, lake_url)
    assert not result.success
    text = failure_text(result)
    assert "replace_with_empty" in text and f"{before:,}" in text
    pd.testing.assert_frame_equal(lake.read_partition("guarded", "raw_events", DAY), stored)

    # Saying so explicitly replaces it.
    flag = {"ops": {"guarded__ingest_events": {"config": {"replace_with_empty": True}}}}
    assert ingest(site, lake_url, flag).success
    assert lake.row_count("guarded", "raw_events", DAY) == 0

    # The files come back: the partition is rebuilt identically.
    shutil.rmtree(landing)
    moved.rename(landing)
    assert ingest(site, lake_url).success
    pd.testing.assert_frame_equal(lake.read_partition("guarded", "raw_events", DAY), stored)


def test_files_that_the_glob_does_not_take_are_an_error_naming_the_glob(tmp_path: Path) -> None:
    landing = tmp_path / "clicks"
    landing.mkdir()
    (landing / "clicks_hour_000.csv").write_text("u,a,t\nx,1,1507000000000\n")
    config = SiteConfig.model_validate(
        {
            "name": "s",
            "timezone": "UTC",
            "start_date": "2017-10-01",
            "events": {
                "format": "csv",
                "location": str(landing),
                "files": "clicks_hour_*.csv.gz",
                "columns": {"user_id": "u", "article_id": "a", "timestamp": "t"},
            },
        }
    )
    with pytest.raises(FileNotFoundError, match=r"matches events.files 'clicks_hour_\*.csv.gz'"):
        event_source(config).list_files()
    # The example Globo site's glob takes both the plain and the gzipped files.
    loose = config.model_copy(
        update={"events": config.events.model_copy(update={"files": "clicks_hour_*.csv*"})}
    )
    assert [f.path.rsplit("/", 1)[-1] for f in event_source(loose).list_files()] == [
        "clicks_hour_000.csv"
    ]
