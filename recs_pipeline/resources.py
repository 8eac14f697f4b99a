"""Dagster resources: the lake (as an IO manager and as a store), the publisher and the clock."""

import datetime as dt
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from dagster._utils.cached_method import cached_method
from pydantic import Field

from recs_pipeline.adapters.lake import Lake, lake_from_url
from recs_pipeline.adapters.publishing import Publisher, publisher_from_url
from recs_pipeline.core import schemas
from recs_pipeline.core.day_frames import DayFrames
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import as_of_for_day, parse_moment


class BoundAtDefinition:
    """A resource whose config is fixed where the code location is defined, not per run.

    A ``ConfigurableResource`` built as ``LakeResource(url=...)`` keeps its fields in the run
    config schema with those values as defaults, so a run config (from the UI, or a GraphQL
    ``launchRun`` sent by another web page) could point the lake or the publisher elsewhere.
    This mixin hands Dagster the resource ``configured`` with its own values behind an empty
    schema: a run config that names any of its fields fails validation before the run starts.
    An ``EnvVar`` stays one: it is read in the run's process, never shown in the run config.
    """

    @cached_method  # Dagster resolves resources by identity: always the same definition
    def get_resource_definition(self) -> Any:  # a plain ResourceDefinition, not the factory one
        definition: dg.ResourceDefinition = super().get_resource_definition()  # type: ignore[misc]
        fixed = dict(self._resolved_config_dict)  # type: ignore[attr-defined]
        return definition.configured(lambda _: fixed, config_schema={})


def site_and_asset(key: dg.AssetKey) -> tuple[str, str]:
    """Asset keys are ``<site>/<asset>``."""
    return key.path[0], key.path[-1]


class LakeIOManager(BoundAtDefinition, dg.ConfigurableIOManager):
    """Stores day-partitioned DataFrames as Parquet partitions of the lake.

    An asset hands over either one frame with a ``date`` column (a run over a range of partitions,
    a single-run backfill, splits it by day) or a ``DayFrames`` / iterable of ``(day, frame)``
    pairs, whose days are written one by one as they are produced, so a long range never sits in
    memory. Either way every day of the run gets its partition, an empty one for a day without
    rows, and rows of a day outside the run are refused: a re-run replaces exactly what it owns.
    (An asset returns a ``DayFrames`` rather than a generator of pairs: Dagster takes a returned
    generator for the asset's own stream of events.)

    An input annotated ``DayFrames`` gets the upstream partitions lazily, each read when its day
    is asked for; any other input gets them read and concatenated into one frame. Partitions never
    written are skipped either way (a trailing window that reaches back before the first day).
    """

    url: str = Field(description="Folder or URL of the lake (RECS_LAKE_URL)")

    def lake(self) -> Lake:
        return lake_from_url(self.url)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """``obj``: a DataFrame, a ``DayFrames``, (day, frame) pairs, or None (nothing stored)."""
        if obj is None:
            return
        if not context.has_asset_partitions:
            raise ValueError("the lake stores day-partitioned assets only")
        site, asset = site_and_asset(context.asset_key)
        days = list(context.asset_partition_keys)
        if isinstance(obj, pd.DataFrame):
            self._write_frame(site, asset, days, obj)
        elif isinstance(obj, Iterable) and not isinstance(obj, str | bytes | Mapping):
            self._write_days(site, asset, days, obj)
        else:
            raise TypeError(
                f"{site}/{asset}: expected a DataFrame, DayFrames or (day, frame) pairs, "
                f"got {type(obj).__name__}"
            )
        if len(days) == 1:
            path = self.lake().partition_path(site, asset, days[0])
            context.add_output_metadata({"path": dg.MetadataValue.path(path)})
        if isinstance(obj, DayFrames):
            context.add_output_metadata(obj.summary())

    def _write_frame(self, site: str, asset: str, days: list[str], frame: pd.DataFrame) -> None:
        """A frame of the whole run, checked before any partition is replaced."""
        if schemas.DATE not in frame.columns:
            raise ValueError(f"{site}/{asset}: a partitioned frame needs a `date` column")
        unknown = set(frame[schemas.DATE].astype(str).unique()) - set(days)
        if unknown:
            raise ValueError(f"{site}/{asset}: rows for days outside the run: {sorted(unknown)}")
        lake = self.lake()
        groups = dict(tuple(frame.groupby(frame[schemas.DATE].astype(str), sort=True)))
        for day in days:
            lake.write_partition(site, asset, day, groups.get(day, frame.iloc[0:0]))

    def _write_days(
        self, site: str, asset: str, days: list[str], pairs: Iterable[tuple[str, pd.DataFrame]]
    ) -> None:
        """Each day's frame written as it is produced; run days without one written empty.

        A day is checked before its partition is written: a day outside the run, a day given
        twice or a frame holding another day's rows stops the run there (the days written before
        it keep their new partitions, each of them complete).
        """
        lake = self.lake()
        run = set(days)
        written: set[str] = set()
        empty: pd.DataFrame | None = None
        for day, frame in pairs:
            if day not in run:
                raise ValueError(f"{site}/{asset}: rows for days outside the run: [{day!r}]")
            if day in written:
                raise ValueError(f"{site}/{asset}: day {day} was given twice")
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(f"{site}/{asset} {day}: expected a DataFrame")
            if schemas.DATE in frame.columns and len(frame):
                other = set(frame[schemas.DATE].astype(str).unique()) - {day}
                if other:
                    raise ValueError(
                        f"{site}/{asset}: rows for days outside the run: {sorted(other)} "
                        f"(in the frame of {day})"
                    )
            lake.write_partition(site, asset, day, frame)
            written.add(day)
            if empty is None:
                empty = frame.iloc[0:0].copy()  # a slice would keep the day's columns alive
            del frame
        for day in days:
            if day not in written:
                missing = empty if empty is not None else pd.DataFrame(columns=[schemas.DATE])
                lake.write_partition(site, asset, day, missing)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | DayFrames:
        assert context.upstream_output is not None
        site, asset = site_and_asset(context.asset_key)
        days = context.asset_partition_keys if context.has_asset_partitions else []
        lake = self.lake()
        if wants_day_frames(context):
            present = [day for day in sorted(days) if lake.has_partition(site, asset, day)]
            return DayFrames({day: partial(_read_day, lake, site, asset, day) for day in present})
        frame = lake.read_partitions(site, asset, days)
        return frame if frame is not None else pd.DataFrame(columns=[schemas.DATE])


def wants_day_frames(context: dg.InputContext) -> bool:
    """Whether the input is annotated ``DayFrames`` (load day by day) rather than a frame."""
    return getattr(context.dagster_type, "typing_type", None) is DayFrames


def _read_day(lake: Lake, site: str, asset: str, day: str) -> pd.DataFrame:
    frame = lake.read_partition(site, asset, day)
    # Written by the run that listed it; gone only if something deleted it since.
    if frame is None:
        raise FileNotFoundError(f"{site}/{asset}: partition {day} disappeared")
    return frame


class LakeResource(BoundAtDefinition, dg.ConfigurableResource):
    """Direct access to the lake, for model artifacts and reads outside IO managers."""

    url: str = Field(description="Folder or URL of the lake (RECS_LAKE_URL)")

    def lake(self) -> Lake:
        return lake_from_url(self.url)


class PublisherResource(BoundAtDefinition, dg.ConfigurableResource):
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

    def moments(self, context: Any, site: SiteConfig) -> dict[str, pd.Timestamp]:
        """The as-of moment of every day a step's run materialises (one partition or a range),
        from one "now" for the whole run: the one place assets get their moments from."""
        started = run_started(context)
        days = sorted(context.partition_keys)
        return {day: self.as_of_for(day, site.tz, started) for day in days}


def run_started(context: Any) -> pd.Timestamp:
    """When the run was created: one "now" for every step of a run, so they agree."""
    record = context.instance.get_run_record_by_id(context.run_id)
    if record is None or record.create_timestamp is None:
        return pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(record.create_timestamp).tz_convert("UTC")
