"""The code location: every site of ``sites/`` with its own asset lineage, jobs and automation."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from recs_pipeline import settings
from recs_pipeline.adapters.publishing import is_postgres_url
from recs_pipeline.alerts import build_alert_sensors
from recs_pipeline.assets.checks import build_gate_checks
from recs_pipeline.assets.data_checks import build_data_checks
from recs_pipeline.assets.ingestion import build_ingestion_assets
from recs_pipeline.assets.models import build_model_assets
from recs_pipeline.assets.ranking import build_ranking_assets
from recs_pipeline.assets.serving import build_serving_assets
from recs_pipeline.automation import build_automation
from recs_pipeline.core.site import SiteConfig, load_sites
from recs_pipeline.postgres_io import LakeAndTablesIOManager
from recs_pipeline.resources import Clock, LakeIOManager, LakeResource, PublisherResource

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def site_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:
    return [
        *build_ingestion_assets(site),
        *build_model_assets(site),
        *build_ranking_assets(site),
        *build_serving_assets(site),
    ]


def build_definitions(
    sites: list[SiteConfig], lake_url: str | None = None, database_url: str | None = None
) -> dg.Definitions:
    """Definitions for some sites; storage from the arguments or the environment."""
    lake = lake_url or settings.lake_url()
    database = database_url or settings.database_url()
    # A URL from the environment stays an environment variable in the resource config, so a
    # password in it never reaches the UI, run configs or logs.
    database_config: str = (
        dg.EnvVar("RECS_DATABASE_URL")
        if database_url is None and os.environ.get("RECS_DATABASE_URL")
        else database
    )
    # On Postgres, the serving-side frames are also written as tables for analysts.
    lake_io: LakeIOManager = (
        LakeAndTablesIOManager(url=lake, database_url=database_config)
        if is_postgres_url(database)
        else LakeIOManager(url=lake)
    )
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    sensors: list[dg.SensorDefinition] = build_alert_sensors()
    with warnings.catch_warnings():
        # Backfill policies, partition mappings (beta) and partitioned asset checks (preview)
        # are what this graph is built on; said once here, not silenced process-wide.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        for site in sites:
            assets.extend(site_assets(site))
            checks.extend(build_gate_checks(site))
            checks.extend(build_data_checks(site))
            automation = build_automation(site)
            jobs.extend(automation.jobs)
            schedules.extend(automation.schedules)
            sensors.extend(automation.sensors)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            "lake_io_manager": lake_io,
            "lake": LakeResource(url=lake),
            "publisher": PublisherResource(url=database_config),
            "clock": Clock(),
        },
        # Steps are short pandas/numpy work: running them in one process saves seconds of
        # process start-up per step; sites still run as separate runs, in parallel.
        executor=dg.in_process_executor,
    )


def load_definitions(sites_dir: Path | None = None) -> dg.Definitions:
    return build_definitions(load_sites(sites_dir or settings.sites_dir()))


defs = load_definitions()
