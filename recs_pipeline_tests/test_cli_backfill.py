"""A date-range backfill of one site through `dagster asset materialize`, as a user types it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.publishing import publisher_from_url
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline.core.timeframe import day_bounds
from recs_pipeline.report import STAGES
from recs_pipeline_tests.conftest import site_config


def test_partition_range_backfill_from_the_cli(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=dt.date(2026, 11, 1),
            days=2,
            users=300,
            articles_per_day=20,
            events_per_day=4000,
            seed=5,
        ),
        landing,
    )
    site = site_config("clisite", landing)
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "clisite.yaml").write_text(site.model_dump_json())  # JSON is YAML
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    lake_url, database_url = str(tmp_path / "lake"), f"sqlite:///{tmp_path / 'recs.sqlite'}"
    env = {
        **os.environ,
        "RECS_SITES_DIR": str(sites),
        "RECS_LAKE_URL": lake_url,
        "RECS_DATABASE_URL": database_url,
        "DAGSTER_HOME": str(home),
    }
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "recs_pipeline.definitions",
            "--select",
            "group:clisite",
            "--partition-range",
            "2026-11-01...2026-11-02",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    lake = lake_from_url(lake_url)
    for stage in STAGES:
        assert lake.days("clisite", stage) == ["2026-11-01", "2026-11-02"], stage
    current = publisher_from_url(database_url).current("clisite", "user")
    assert current is not None
    assert current.as_of == day_bounds("2026-11-02", site.tz)[1].to_pydatetime()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for stage in ("raw_events", "published_recommendations"):
            done = instance.get_materialized_partitions(dg.AssetKey(["clisite", stage]))
            assert done == {"2026-11-01", "2026-11-02"}
