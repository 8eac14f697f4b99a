"""Site configuration: a site is a YAML file, not code.

A newsroom adds a site by dropping ``sites/<name>.yaml`` next to the others; every field below has
a default taken from the systems this project replaces (28-day window, 30-600 s dwell, articles
read by more than 5 users, ...). Strings may reference the environment as ``${VAR}`` or
``${VAR:-default}`` so the same file works on a laptop and in a deployment.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SITE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvColumns(_Strict):
    """Which column of a delimited file holds each event field."""

    user_id: str
    article_id: str | None = None
    timestamp: str
    event_id: str | None = None
    path: str | None = None
    event_name: str | None = None
    referrer: str | None = None
    user_agent: str | None = None


class EventSourceConfig(_Strict):
    """Where a site's landing files are and how to read them."""

    format: Literal["snowplow", "csv"]
    location: str
    #: Glob of landing files below ``location``.
    files: str = "**/*.json.gz"
    #: Seconds between two ``page_ping`` heartbeats (dwell = pings x interval).
    heartbeat_seconds: int = Field(default=10, gt=0)
    #: Regex whose first group is the article id inside a page path.
    article_id_pattern: str = r"-(\d+)/?$"
    #: Paths starting with one of these are never articles (sections, authors, tags).
    excluded_path_prefixes: tuple[str, ...] = ("/section/", "/author/", "/tag/", "/search")
    #: A user agent matching this (case-insensitive) is a bot; its events are quarantined.
    bot_user_agent_pattern: str = r"bot|crawler|spider|slurp|headless|monitor"
    # Delimited files only:
    columns: CsvColumns | None = None
    delimiter: str = ","
    #: Unit of numeric timestamps ("s", "ms", "us"), or "iso" for text timestamps.
    timestamp_unit: Literal["s", "ms", "us", "ns", "iso"] = "ms"
    #: Time zone of text timestamps without an offset.
    timestamp_timezone: str = "UTC"

    @model_validator(mode="after")
    def _csv_needs_columns(self) -> EventSourceConfig:
        if self.format == "csv" and self.columns is None:
            raise ValueError("a csv event source needs a `columns` mapping")
        if (
            self.format == "csv"
            and self.columns is not None
            and self.columns.article_id is None
            and self.columns.path is None
        ):
            raise ValueError("a csv event source maps `article_id` or `path` (or both)")
        re.compile(self.article_id_pattern)
        re.compile(self.bot_user_agent_pattern)
        return self

    @property
    def has_heartbeats(self) -> bool:
        """Whether dwell time can be measured (Snowplow page pings) or only clicks counted."""
        return self.format == "snowplow"

    def resolved_location(self) -> Path:
        return Path(self.location).expanduser()


class EngagementConfig(_Strict):
    """Who and what counts as a real read; defaults are the seed system's numbers."""

    window_days: int = Field(default=28, gt=0, le=366)
    #: Per (user, article, day): dwell outside [min, max] is not a real read (heartbeat sources).
    min_dwell_seconds: float = 30.0
    max_dwell_seconds: float = 600.0
    #: A user's total dwell over the window must exceed this (heartbeat sources).
    min_user_dwell_seconds: float = 60.0
    #: An article must be read by at least this many users over the window.
    min_article_readers: int = Field(default=6, ge=1)
    #: A user must have read at least this many articles over the window.
    min_user_articles: int = Field(default=3, ge=1)
    #: Articles first seen longer ago than this are left out (None: no limit).
    max_article_age_days: float | None = None


class AlsConfig(_Strict):
    factors: int = Field(default=64, gt=0)
    regularization: float = 0.05
    iterations: int = Field(default=15, gt=0)
    alpha: float = 1.0
    bm25: bool = True
    seed: int = 42


class PopularConfig(_Strict):
    half_life_hours: float = Field(default=240.0, gt=0)
    window_days: int = Field(default=7, gt=0)
    top_n: int = Field(default=50, gt=0)


class SimilarConfig(_Strict):
    half_life_days: float = Field(default=60.0, gt=0)
    top_k: int = Field(default=10, gt=0)


class ModelsConfig(_Strict):
    als: AlsConfig = AlsConfig()
    popular: PopularConfig = PopularConfig()
    similar: SimilarConfig = SimilarConfig()
    #: Recommendations stored per user.
    per_user: int = Field(default=20, gt=0)


class PublishConfig(_Strict):
    #: Versions kept per (site, model type), the current one included.
    keep_versions: int = Field(default=3, ge=1)


class AutomationConfig(_Strict):
    #: Cron (site time zone) of the recommendation refresh.
    refresh_cron: str = "0 */2 * * *"
    #: Cron (site time zone) of the daily re-ingestion of yesterday's files.
    ingest_cron: str = "30 0 * * *"
    #: Seconds between two looks at the landing folder.
    sensor_interval_seconds: int = Field(default=300, gt=0)
    #: Whether schedules and sensors start running when the code location loads.
    running_by_default: bool = False


class SiteConfig(_Strict):
    """One news site: its events, thresholds, models and automation."""

    name: str
    description: str = ""
    timezone: str = "UTC"
    #: First day partition.
    start_date: dt.date
    events: EventSourceConfig
    engagement: EngagementConfig = EngagementConfig()
    models: ModelsConfig = ModelsConfig()
    publish: PublishConfig = PublishConfig()
    automation: AutomationConfig = AutomationConfig()

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _SITE_NAME.match(value):
            raise ValueError(
                f"site name {value!r} must be lower-case letters, digits and underscores "
                "(it prefixes asset keys and table rows)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML document."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ValueError(f"environment variable {name} is not set and has no default")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {key: expand_env(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, env) for item in value]
    return value


def load_site(path: Path, environ: Mapping[str, str] | None = None) -> SiteConfig:
    """Read one site file; the error names the file and the field that is wrong."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a site file is a YAML mapping")
    try:
        return SiteConfig.model_validate(expand_env(document, environ))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def load_sites(directory: Path, environ: Mapping[str, str] | None = None) -> list[SiteConfig]:
    """Every ``*.yaml`` site in a folder, sorted by name; duplicate names are an error."""
    sites = [load_site(path, environ) for path in sorted(directory.glob("*.yaml"))]
    _check_unique(site.name for site in sites)
    return sorted(sites, key=lambda site: site.name)


def _check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two site files declare the site {name!r}")
        seen.add(name)
