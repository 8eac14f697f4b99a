"""Event sources: where a site's landing files are and how each format is read.

Each source is small and named for what it reads; the site's YAML chooses one (``events.format``).
They list landing files (for the sensor), say which day partitions a file touches, and read
days into the canonical frames through ``core.events``, streaming file by file.
"""

from __future__ import annotations

from recs_pipeline.adapters.sources.base import EventSource, FileSource, LandingFile
from recs_pipeline.adapters.sources.delimited import CsvEvents
from recs_pipeline.adapters.sources.ga4 import Ga4Events
from recs_pipeline.adapters.sources.mind import MindBehaviors
from recs_pipeline.adapters.sources.snowplow import SnowplowEvents
from recs_pipeline.core.site import SiteConfig

__all__ = [
    "CsvEvents",
    "EventSource",
    "FileSource",
    "Ga4Events",
    "LandingFile",
    "MindBehaviors",
    "SnowplowEvents",
    "event_source",
]


def event_source(site: SiteConfig) -> EventSource:
    """The source a site's configuration names."""
    config = site.events
    if config.format == "snowplow":
        return SnowplowEvents(config, site.tz)
    if config.format == "ga4":
        return Ga4Events(config, site.tz)
    if config.format == "mind":
        return MindBehaviors(config, site.tz, site.start_date)
    return CsvEvents(config, site.tz, site.start_date)
