"""The code location: every site of ``sites/`` with its own asset lineage, jobs and automation."""

from __future__ import annotations

import hashlib
import logging
import os
import re
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
from recs_pipeline.core.site import SiteConfig, SiteConfigError, read_sites
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


#: The UI group of the site files that do not load (one placeholder asset per file).
BROKEN_GROUP = "broken_sites"


def broken_site_key(error: SiteConfigError) -> dg.AssetKey:
    return dg.AssetKey([BROKEN_GROUP, re.sub(r"[^A-Za-z0-9_]", "_", error.path.stem)])


def _failing_check(asset_key: dg.AssetKey, message: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name="site_file_loads",
        description="Fails while the site file does not load; the reason is the error.",
    )
    def site_file_loads() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, description=message
        )

    return site_file_loads


def broken_site_definitions(
    broken: list[SiteConfigError],
) -> tuple[list[dg.AssetSpec], list[dg.AssetChecksDefinition], list[dg.SensorDefinition]]:
    """What the UI shows of site files that do not load, while the other sites load.

    Each file gets a placeholder asset ``broken_sites/<file>`` (group ``broken_sites``) whose
    description and metadata carry the file and the error, and a check ``site_file_loads`` that
    fails with the error; the sensor ``recs_broken_site_files`` (running by default) records
    that failed check whenever the errors change, so it shows red without anyone running it.
    """
    if not broken:
        return [], [], []
    specs: list[dg.AssetSpec] = []
    checks: list[dg.AssetChecksDefinition] = []
    evaluations: list[dg.AssetCheckEvaluation] = []
    for error in broken:
        asset_key = broken_site_key(error)
        metadata = {
            "site_file": dg.MetadataValue.path(str(error.path)),
            "error": dg.MetadataValue.text(str(error)),
        }
        specs.append(
            dg.AssetSpec(
                asset_key,
                group_name=BROKEN_GROUP,
                description=(
                    f"**The site file `{error.path}` does not load**: the site `{error.name}` "
                    "has no assets, jobs, schedules or sensors until it is fixed (the other "
                    f"sites are not affected).\n\n{error.message}"
                ),
                metadata=metadata,
                kinds={"yaml"},
                tags={"recs/broken_site": "true"},
            )
        )

        checks.append(_failing_check(asset_key, str(error)))
        evaluations.append(
            dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name="site_file_loads",
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description=str(error),
                metadata=metadata,
            )
        )
    said = "; ".join(str(error) for error in broken)
    digest = hashlib.sha1(said.encode()).hexdigest()

    @dg.sensor(
        name="recs_broken_site_files",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records a failed site_file_loads check for each site file that does not load.",
    )
    def broken_site_files(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if context.cursor == digest:
            return dg.SensorResult(skip_reason=f"still broken: {said}")
        return dg.SensorResult(asset_events=evaluations, cursor=digest)

    return specs, checks, [broken_site_files]


def build_definitions(
    sites: list[SiteConfig],
    lake_url: str | None = None,
    database_url: str | None = None,
    broken: list[SiteConfigError] | None = None,
) -> dg.Definitions:
    """Definitions for some sites (and placeholders of the site files that do not load, see
    ``broken_site_definitions``); storage from the arguments or the environment."""
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
    placeholders, checks, sensors = broken_site_definitions(broken or [])
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = [*placeholders]
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    sensors.extend(build_alert_sensors())
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
    """The sites of the sites folder; a file that does not load is logged and shown in the UI
    (group ``broken_sites``) instead of taking the code location down."""
    files = read_sites(sites_dir or settings.sites_dir())
    for error in files.broken:
        logging.getLogger("recs_pipeline").error("site file skipped: %s", error)
    return build_definitions(files.sites, broken=files.broken)


defs = load_definitions()
