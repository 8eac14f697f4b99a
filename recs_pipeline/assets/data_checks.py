"""Non-blocking checks on each day's events: what an on-call engineer wants to hear about.

- ``event_volume_near_median``: a finished day's events within ``checks.volume_ratio`` x of the
  median of the previous ``checks.volume_days`` days that had events (a tracker that stopped,
  or a bot flood, shows here first).
- ``quarantine_share_below_limit``: quarantined lines / all lines of the day at most
  ``checks.max_quarantine_share``.
- ``landing_day_not_empty``: a finished day has landing lines at all.

They read row counts from the lake's Parquet footers (no data), never stop a run, and a failure
reaches the alert webhook through ``recs_failed_check_alert``.
"""

import statistics

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.assets.checks import DayCheck, DayVerdict, day_check
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import day_bounds, window_days

__all__ = [
    "build_data_checks",
    "empty_day_verdict",
    "quarantine_verdict",
    "volume_verdict",
]


def volume_verdict(
    events: int, previous: list[int], ratio: float, finished: bool = True
) -> DayVerdict:
    """Whether a day's events are within ``ratio`` x of the median of earlier days (pure)."""
    history = [count for count in previous if count > 0]
    if not finished:
        return True, f"{events:,} events so far: the day is still running", {}
    if len(history) < 2:
        return True, f"{events:,} events; fewer than 2 earlier days to compare with", {}
    median = float(statistics.median(history))
    low, high = median / ratio, median * ratio
    passed = low <= events <= high
    reason = (
        f"{events:,} events against a median of {median:,.0f} over {len(history)} earlier days "
        f"({events / median:.2f}x; expected {1 / ratio:.2f}x to {ratio:g}x)"
    )
    return passed, reason, {"events": float(events), "median": median, "ratio": events / median}


def quarantine_verdict(events: int, quarantined: int, limit: float) -> DayVerdict:
    lines = events + quarantined
    share = quarantined / lines if lines else 0.0
    passed = share <= limit
    reason = (
        f"{quarantined:,} of {lines:,} lines quarantined ({share:.2%}; "
        f"limit {limit:.2%}): see quarantined_events for the reasons"
    )
    return passed, reason, {"quarantined": float(quarantined), "share": share}


def empty_day_verdict(events: int, quarantined: int, finished: bool = True) -> DayVerdict:
    if events + quarantined or not finished:
        return True, f"{events + quarantined:,} landing lines", {}
    return False, "no landing line for the whole day: is the tracker or the export running?", {}


def _finished(site: SiteConfig, day: str) -> bool:
    _, end = day_bounds(day, site.tz)
    return pd.Timestamp.now(tz="UTC") >= end


def _volume_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    earlier = window_days(day, site.checks.volume_days + 1)[:-1]
    return volume_verdict(
        lake.row_count(site.name, names.RAW_EVENTS, day),
        [lake.row_count(site.name, names.RAW_EVENTS, d) for d in earlier],
        site.checks.volume_ratio,
        finished=_finished(site, day),
    )


def _quarantine_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    return quarantine_verdict(
        lake.row_count(site.name, names.RAW_EVENTS, day),
        lake.row_count(site.name, names.QUARANTINED_EVENTS, day),
        site.checks.max_quarantine_share,
    )


def _empty_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    return empty_day_verdict(
        lake.row_count(site.name, names.RAW_EVENTS, day),
        lake.row_count(site.name, names.QUARANTINED_EVENTS, day),
        finished=_finished(site, day),
    )


DATA_CHECKS = (
    DayCheck(
        "event_volume_near_median",
        "A finished day's events are near the median of the previous days.",
        _volume_day,
        reads=(names.QUARANTINED_EVENTS,),
    ),
    DayCheck(
        "quarantine_share_below_limit",
        "Few of the day's landing lines were quarantined.",
        _quarantine_day,
        reads=(names.QUARANTINED_EVENTS,),
    ),
    DayCheck(
        "landing_day_not_empty",
        "A finished day has landing lines.",
        _empty_day,
        reads=(names.QUARANTINED_EVENTS,),
    ),
)


def build_data_checks(site: SiteConfig) -> list[dg.AssetChecksDefinition]:
    return [day_check(site, names.RAW_EVENTS, check, blocking=False) for check in DATA_CHECKS]
