"""Jobs, schedules and the landing-file sensor of each site.

- ``<site>__refresh`` (every 2 hours by default): the whole site graph for the current day, as of
  the tick's scheduled time, so a tick re-run gives the same recommendations.
- ``<site>__ingest`` (daily, shortly after midnight): yesterday's events again, to catch late files.
- ``<site>__landing_files`` sensor: new landing files request the ingestion of the days they touch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.sources import LandingFile, event_source
from recs_pipeline.adapters.sources.base import SETTLE_SECONDS
from recs_pipeline.assets.common import key
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import day_of

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

INGEST_ASSETS = (names.RAW_EVENTS, names.QUARANTINED_EVENTS, names.PAGES, names.ENGAGEMENT)


@dataclass(frozen=True)
class SiteAutomation:
    jobs: list[UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def refresh_request(site: SiteConfig, scheduled: dt.datetime) -> dg.RunRequest | dg.SkipReason:
    """The run a refresh tick asks for: the day that contains (or ends at) the tick, as of it."""
    moment = pd.Timestamp(scheduled).tz_convert("UTC")
    day = day_of(moment - pd.Timedelta(milliseconds=1), site.tz)
    if day < site.start_date:
        return dg.SkipReason(f"{day} is before the site's first day {site.start_date}")
    as_of = moment.isoformat()
    return dg.RunRequest(
        partition_key=day.isoformat(),
        run_config={"resources": {"clock": {"config": {"as_of": as_of}}}},
        tags={"recs/site": site.name, "recs/as_of": as_of},
    )


def file_key(file: LandingFile) -> str:
    """A delivery's identity: path, size and modification time (a rewrite is a new delivery)."""
    identity = f"{file.path}\0{file.size}\0{file.mtime!r}"
    return hashlib.sha1(identity.encode()).hexdigest()[:20]


def new_landing_files(
    files: list[LandingFile],
    cursor: str | None,
    now: float | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> tuple[list[LandingFile], str]:
    """Files not reported yet and the cursor after them.

    Files are tracked by identity (path + size + modification time), not by a time watermark, so
    a late file with an old modification time (``cp -p``, ``rsync -t``, an S3 multipart upload)
    is seen, and a file rewritten in place is reported again. A file modified within
    ``settle_seconds`` may still be being written: it is reported by a later tick, once it has
    settled. The cursor keeps the identities of the settled files listed now (those of deleted
    files are forgotten, so it stays the size of the landing area's listing).
    """
    moment = time.time() if now is None else now
    state: dict[str, Any] = json.loads(cursor) if cursor else {}
    settled = [file for file in files if moment - file.mtime >= settle_seconds]
    if "files" in state:
        seen = set(state["files"])
    elif "mtime" in state:  # the watermark cursor of earlier versions
        watermark, at_watermark = float(state["mtime"]), set(state["paths"])
        seen = {
            file_key(f)
            for f in settled
            if f.mtime < watermark or (f.mtime == watermark and f.path in at_watermark)
        }
    else:
        seen = set()
    keys = {file_key(file): file for file in settled}
    fresh = [file for key, file in keys.items() if key not in seen]
    return fresh, json.dumps({"files": sorted(keys)})


#: Scheduled and sensor runs (the site's jobs) are retried when their process dies (partitions
#: are idempotent, so a retry is safe); a step that fails is retried by its own retry policy
#: and a blocked gate is not retried (it would block again).
RUN_RETRIES: Final = {"dagster/max_retries": "2", "dagster/retry_on_asset_or_op_failure": "false"}


def build_automation(site: SiteConfig) -> SiteAutomation:
    status = (
        dg.DefaultScheduleStatus.RUNNING
        if site.automation.running_by_default
        else dg.DefaultScheduleStatus.STOPPED
    )
    sensor_status = (
        dg.DefaultSensorStatus.RUNNING
        if site.automation.running_by_default
        else dg.DefaultSensorStatus.STOPPED
    )
    ingest_job = dg.define_asset_job(
        name=f"{site.name}__ingest",
        selection=dg.AssetSelection.assets(*(key(site, name) for name in INGEST_ASSETS)),
        description=(
            f"Ingest {site.name}'s landing files for a day: events, quarantine, pages, engagement."
        ),
        tags={"recs/site": site.name, **RUN_RETRIES},
    )
    refresh_job = dg.define_asset_job(
        name=f"{site.name}__refresh",
        selection=dg.AssetSelection.groups(site.name),
        description=f"Rebuild and publish {site.name}'s recommendations for a day, as of a moment.",
        tags={"recs/site": site.name, **RUN_RETRIES},
    )

    @dg.schedule(
        name=f"{site.name}__refresh_schedule",
        cron_schedule=site.automation.refresh_cron,
        execution_timezone=site.timezone,
        job=refresh_job,
        default_status=status,
    )
    def refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return refresh_request(site, context.scheduled_execution_time)

    @dg.schedule(
        name=f"{site.name}__ingest_schedule",
        cron_schedule=site.automation.ingest_cron,
        execution_timezone=site.timezone,
        job=ingest_job,
        default_status=status,
    )
    def ingest_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        today = day_of(pd.Timestamp(context.scheduled_execution_time), site.tz)
        yesterday = today - dt.timedelta(days=1)
        if yesterday < site.start_date:
            return dg.SkipReason(f"{yesterday} is before the site's first day")
        return dg.RunRequest(partition_key=yesterday.isoformat(), tags={"recs/site": site.name})

    @dg.sensor(
        name=f"{site.name}__landing_files",
        job=ingest_job,
        minimum_interval_seconds=site.automation.sensor_interval_seconds,
        default_status=sensor_status,
        description=f"Ingest the days touched by new files in {site.name}'s landing area.",
    )
    def landing_files(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        source = event_source(site)
        try:
            listed = source.list_files()
        except (FileNotFoundError, NotADirectoryError) as error:
            # A landing area not created yet (or gone): said on every tick, nothing requested.
            return dg.SensorResult(skip_reason=str(error), cursor=context.cursor)
        settle = getattr(source, "settle_seconds", SETTLE_SECONDS)
        fresh, cursor = new_landing_files(listed, context.cursor, settle_seconds=settle)
        if not fresh:
            return dg.SensorResult(skip_reason="no new landing files", cursor=cursor)
        outside = getattr(getattr(source, "problems", None), "outside_layout", [])
        if outside:
            context.log.warning(
                f"{len(outside)} landing files match {site.events.file_glob!r} but not the "
                f"source's layout and are never ingested, e.g. {outside[:3]}"
            )
        today = day_of(pd.Timestamp.now(tz="UTC"), site.tz)
        days: set[dt.date] = set()
        for file in fresh:
            try:
                days |= source.days_of(file)
            except Exception as error:  # one bad file must not stop the sensor
                context.log.error(f"{file.path}: cannot tell its days: {error!r}")
        wanted = sorted(day for day in days if site.start_date <= day <= today)
        requests = [
            dg.RunRequest(
                partition_key=day.isoformat(),
                run_key=f"{day.isoformat()}@{hashlib.sha1(cursor.encode()).hexdigest()[:16]}",
                tags={"recs/site": site.name, "recs/new_files": str(len(fresh))},
            )
            for day in wanted
        ]
        context.log.info(f"{len(fresh)} new files -> days {[d.isoformat() for d in wanted]}")
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return SiteAutomation(
        jobs=[ingest_job, refresh_job],
        schedules=[refresh_schedule, ingest_schedule],
        sensors=[landing_files],
    )
