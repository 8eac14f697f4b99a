"""What every site's assets share: keys, partitions, and small metadata helpers."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import dagster as dg
import numpy as np
import pandas as pd

from recs_pipeline.core import asset_names as names
from recs_pipeline.core.site import SiteConfig

#: One run for a whole range of partitions: the CLI's --partition-range needs it, and one run
#: reads a trailing window once instead of once per day.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # what this graph is built on
    SINGLE_RUN = dg.BackfillPolicy.single_run()

LAKE_IO = "lake_io_manager"

#: Steps that talk to a CMS or the serving database: three more tries, 10 s then 20 s then 40 s
#: (± jitter), so a blip of the network or a database restart costs a retry, not a failed run.
NETWORK_RETRIES: Final = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def key(site: SiteConfig, asset: str) -> dg.AssetKey:
    """``<site>/<asset>``: every site has its own lineage."""
    return dg.AssetKey([site.name, asset])


def site_pool(site: SiteConfig) -> str:
    """The site's Dagster concurrency pool: every step of its assets claims one slot of it.

    The instance gives each pool one slot (``concurrency: pools: default_limit: 1`` in
    ``dagster.yaml``), so two runs of one site never run steps at once, however they were
    launched (schedule, sensor, UI backfill, ``dagster asset materialize``, ``materialize()``),
    while different sites run side by side.
    """
    return f"site_{site.name}"


def daily_partitions(site: SiteConfig) -> dg.DailyPartitionsDefinition:
    """Days in the site's time zone; today's partition exists (it is refreshed as files land)."""
    return dg.DailyPartitionsDefinition(
        start_date=site.start_date.isoformat(), timezone=site.timezone, end_offset=1
    )


def trailing_window(days: int) -> dg.TimeWindowPartitionMapping:
    """The ``days`` day partitions ending with the downstream partition."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(days - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
    )


def previous_day_dep(site: SiteConfig, name: str, days: int = 1) -> dg.AssetDep:
    """A dependency on the partition ``days`` before: models as of a day's start are the
    previous day's."""
    return dg.AssetDep(
        key(site, name),
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-days, end_offset=-days, allow_nonexistent_upstream_partitions=True
        ),
    )


def run_days(context: dg.AssetExecutionContext) -> list[str]:
    """The day keys this run materialises (one, or a range in a single-run backfill)."""
    return sorted(context.partition_keys)


def day_metadata(
    context: dg.AssetExecutionContext, day: str, values: Mapping[str, float | int]
) -> None:
    """A day's own numbers on its partition's materialisation (they win over the run's totals
    that ``add_output_metadata`` stamps on every partition of a range), so the UI's plots over
    partitions show each day."""
    context.add_asset_metadata(numeric(values), partition_key=day)


def markdown_table(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """A small preview a person reads in the UI."""
    if frame.empty:
        return dg.MetadataValue.md("_empty_")
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False))


def numeric(values: Mapping[str, float | int]) -> dict[str, dg.MetadataValue]:
    """Numbers as typed metadata, so the UI plots them across materialisations."""
    out: dict[str, dg.MetadataValue] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[name] = (
            dg.MetadataValue.int(int(value))
            if isinstance(value, int)
            else dg.MetadataValue.float(float(value))
        )
    return out


class DistinctCount:
    """How many distinct values a stage saw over days it let go of (users, articles).

    Values are kept as 64-bit hashes, a few bytes each instead of the strings, so counting a
    long range's readers costs little next to one day's frame.
    """

    def __init__(self) -> None:
        self._seen = np.empty(0, dtype="uint64")

    def add(self, values: pd.Series) -> None:
        distinct = np.asarray(values.dropna().unique(), dtype=object)
        if len(distinct):
            hashed = pd.util.hash_array(distinct.astype(str).astype(object))
            self._seen = np.union1d(self._seen, hashed)

    def __len__(self) -> int:
        return len(self._seen)


#: The ``stage`` tag of each asset (filter the UI's asset list by it).
STAGE_OF: Final = {
    names.RAW_EVENTS: "ingestion",
    names.QUARANTINED_EVENTS: "ingestion",
    names.PAGES: "ingestion",
    names.ENGAGEMENT: "ingestion",
    names.RANKER_MODEL: "ranking",
    names.RECOMMENDATION_EVALUATION: "ranking",
    names.USER_RECOMMENDATIONS: "serving",
    names.SESSION_RANKER: "serving",
    names.PUBLISHED_RECOMMENDATIONS: "serving",
}


def site_asset(
    site: SiteConfig,
    name: str,
    *,
    ins: Mapping[str, dg.AssetIn] | None = None,
    deps: Sequence[dg.AssetKey | dg.AssetDep] = (),
    kinds: Iterable[str] = ("parquet", "pandas"),
    stored: bool = True,
    freshness_policy: dg.FreshnessPolicy | None = None,
    talks_to_network: bool = False,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset`` with what every asset of a site shares.

    Day partitions in the site's time zone, the site's group and owners, tags ``site`` and
    ``stage`` (ingestion, models, ranking, serving), a single-run backfill policy and, when
    ``stored``, the lake IO manager for the returned frame. A step that ``talks_to_network``
    (a CMS, the serving database) is retried with back-off: its writes are idempotent.
    """
    return dg.asset(
        key=key(site, name),
        ins=dict(ins or {}),
        deps=list(deps),
        partitions_def=daily_partitions(site),
        group_name=site.name,
        io_manager_key=LAKE_IO if stored else None,
        backfill_policy=SINGLE_RUN,
        kinds=set(kinds),
        owners=list(site.owners),
        tags={"site": site.name, "stage": STAGE_OF.get(name, "models")},
        freshness_policy=freshness_policy,
        retry_policy=NETWORK_RETRIES if talks_to_network else None,
        pool=site_pool(site),
    )


def concat_days(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """One output frame from per-day frames, with its columns even when no day had rows."""
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)[list(columns)]
