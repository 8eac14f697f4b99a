"""Dagster resources: the lake (as an IO manager and as a store), the publisher and the clock."""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from pydantic import Field

from recs_pipeline.adapters.lake import Lake, lake_from_url
from recs_pipeline.adapters.publishing import Publisher, publisher_from_url
from recs_pipeline.core import schemas
from recs_pipeline.core.timeframe import as_of_for_day, parse_moment


def site_and_asset(key: dg.AssetKey) -> tuple[str, str]:
    """Asset keys are ``<site>/<asset>``."""
    return key.path[0], key.path[-1]


class LakeIOManager(dg.ConfigurableIOManager):
    """Stores day-partitioned DataFrames as Parquet partitions of the lake.

    A run over a range of partitions (a single-run backfill) hands over one frame with a ``date``
    column; each of the run's days is written as its own partition, an empty one included, so a
    re-run replaces exactly what it owns. Loading an input reads the upstream partitions the
    partition mapping asks for and skips the ones never written (a trailing window that reaches
    back before the first day of data).
    """

    url: str = Field(description="Folder or URL of the lake (RECS_LAKE_URL)")

    def lake(self) -> Lake:
        return lake_from_url(self.url)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        if not context.has_asset_partitions:
            raise ValueError("the lake stores day-partitioned assets only")
        site, asset = site_and_asset(context.asset_key)
        lake = self.lake()
        days = context.asset_partition_keys
        if schemas.DATE not in obj.columns:
            raise ValueError(f"{site}/{asset}: a partitioned frame needs a `date` column")
        unknown = set(obj[schemas.DATE].astype(str).unique()) - set(days)
        if unknown:
            raise ValueError(f"{site}/{asset}: rows for days outside the run: {sorted(unknown)}")
        groups = dict(tuple(obj.groupby(obj[schemas.DATE].astype(str), sort=True)))
        for day in days:
            part = groups.get(day, obj.iloc[0:0])
            lake.write_partition(site, asset, day, part)
        if len(days) == 1:
            context.add_output_metadata(
                {"path": dg.MetadataValue.path(lake.partition_path(site, asset, days[0]))}
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        assert context.upstream_output is not None
        site, asset = site_and_asset(context.asset_key)
        days = context.asset_partition_keys if context.has_asset_partitions else []
        frame = self.lake().read_partitions(site, asset, days)
        return frame if frame is not None else pd.DataFrame(columns=[schemas.DATE])


class LakeResource(dg.ConfigurableResource):
    """Direct access to the lake, for model artifacts and reads outside IO managers."""

    url: str = Field(description="Folder or URL of the lake (RECS_LAKE_URL)")

    def lake(self) -> Lake:
        return lake_from_url(self.url)


class PublisherResource(dg.ConfigurableResource):
    """The serving database that recommendations are published to (RECS_DATABASE_URL)."""

    url: str = Field(description="sqlite:///path or a database URL (RECS_DATABASE_URL)")

    def publisher(self) -> Publisher:
        return publisher_from_url(self.url)


class Clock(dg.ConfigurableResource):
    """The moment downstream stages are computed as of.

    Unset: the end of each partition day, or the run's start time while the day is still running.
    Set (``resources: {clock: {config: {as_of: "2026-11-10T14:00:00Z"}}}``): that exact moment,
    which must fall inside the run's partition day.
    """

    as_of: str | None = Field(
        default=None, description="ISO timestamp (UTC unless it has an offset); empty = default"
    )

    def as_of_for(
        self, day: str | dt.date, tz: ZoneInfo, run_started: pd.Timestamp
    ) -> pd.Timestamp:
        explicit = parse_moment(self.as_of) if self.as_of else None
        return as_of_for_day(day, tz, explicit=explicit, now=run_started)


def run_started(context: Any) -> pd.Timestamp:
    """When the run was created: one "now" for every step of a run, so they agree."""
    record = context.instance.get_run_record_by_id(context.run_id)
    if record is None or record.create_timestamp is None:
        return pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(record.create_timestamp).tz_convert("UTC")
