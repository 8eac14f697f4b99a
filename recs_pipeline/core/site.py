"""Site configuration: a site is a YAML file, not code.

A newsroom adds a site by dropping ``sites/<name>.yaml`` next to the others; every field below has
a default taken from the systems this project replaces (28-day window, 30-600 s dwell, articles
read by more than 5 users, ...). Strings may reference the environment as ``${VAR}`` or
``${VAR:-default}`` so the same file works on a laptop and in a deployment.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    """Where a site's landing files are and how to read them (docs/sources.md, "Event sources")."""

    format: Literal["snowplow", "ga4", "csv", "mind"]
    #: Folder, ``file://`` or ``s3://bucket/prefix`` of the landing files.
    location: str
    #: Glob of landing files below ``location`` (default per format, see ``file_glob``).
    files: str | None = None
    #: Seconds between two ``page_ping`` heartbeats (dwell = pings x interval).
    heartbeat_seconds: int = Field(default=10, gt=0)
    #: Regex whose first group is the article id inside a page path.
    article_id_pattern: str = r"-(\d+)/?$"
    #: Paths starting with one of these are never articles (sections, authors, tags).
    excluded_path_prefixes: tuple[str, ...] = ("/section/", "/author/", "/tag/", "/search")
    #: ``reason: regex``: paths matching the regex are not articles, counted under the reason
    #: (``sponsored: '^/partner-content/'``, ``wires: '/ap-[a-z0-9-]+$'``).
    excluded_path_patterns: dict[str, str] = Field(default_factory=dict)
    #: The site's hosts: a page URL on another host is not the site's page (empty: any host).
    hosts: tuple[str, ...] = ()
    #: Query parameters that name a different page; all others are stripped from paths.
    significant_params: tuple[str, ...] = ()
    #: A user agent matching this (case-insensitive) is a bot; its events are quarantined.
    bot_user_agent_pattern: str = r"bot|crawler|spider|slurp|headless|monitor"
    #: Name of an environment variable holding a secret salt: user ids are replaced by keyed
    #: hashes before anything is stored (the salt itself is never in a file or a log).
    pseudonymise_salt_env: str | None = None
    # Delimited files (csv) and MIND:
    columns: CsvColumns | None = None
    delimiter: str = ","
    #: Whether the first row names the columns (names matched ignoring case, spaces and BOM).
    header: bool = True
    #: Column names of files without a header row, in order.
    column_names: tuple[str, ...] | None = None
    #: Lines to skip before the header (or the first row).
    skip_rows: int = Field(default=0, ge=0)
    #: ``auto`` detects gzip, bzip2, zstd and lz4 from the file's first bytes.
    compression: Literal["auto", "none", "gzip", "bz2", "zstd", "lz4"] = "auto"
    #: Unit of numeric timestamps ("s", "ms", "us", "ns"), or "iso" for text timestamps.
    timestamp_unit: Literal["s", "ms", "us", "ns", "iso"] = "ms"
    #: strftime format of text timestamps (instead of ISO 8601), e.g. ``%m/%d/%Y %I:%M:%S %p``.
    timestamp_format: str | None = None
    #: Time zone of text timestamps without an offset.
    timestamp_timezone: str = "UTC"
    #: MIND: also emit the click history of each user (dated at the user's first impression).
    mind_history: bool = True

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
        if not self.header and self.format == "csv" and not self.column_names:
            raise ValueError("a csv source with `header: false` needs `column_names`")
        for pattern in (self.article_id_pattern, self.bot_user_agent_pattern):
            re.compile(pattern)
        for pattern in self.excluded_path_patterns.values():
            re.compile(pattern)
        try:
            ZoneInfo(self.timestamp_timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown timestamp_timezone {self.timestamp_timezone!r}") from error
        return self

    @property
    def file_glob(self) -> str:
        defaults = {
            "snowplow": "**/*.json.gz",
            "ga4": "**/events_*",
            "csv": "**/*.csv*",
            "mind": "**/behaviors*.tsv*",
        }
        return self.files or defaults[self.format]

    @property
    def has_heartbeats(self) -> bool:
        """Whether dwell time is measured (Snowplow pings, GA4 engagement time) or only clicks."""
        return self.format in ("snowplow", "ga4")

    def resolved_location(self) -> Path:
        return Path(self.location).expanduser()


class PagesConfig(_Strict):
    """Where article metadata comes from, and how politely it is asked for (docs/sources.md,
    "Pages and articles")."""

    #: ``none``: ids from the events only; ``wordpress``: the WordPress REST API;
    #: ``html_meta``: the article page's meta tags (og:title, article:published_time, ...).
    fetcher: Literal["none", "wordpress", "html_meta"] = "none"
    #: The site's root URL (``https://news.example.com``); paths are fetched below it.
    base_url: str | None = None
    #: Regex whose first group is the WordPress slug inside a canonical path.
    slug_pattern: str = r"([^/]+?)/?$"
    #: WordPress tag ids (or names) of republished (not in-house) articles.
    republished_tags: tuple[str, ...] = ()
    max_concurrency: int = Field(default=2, ge=1, le=32)
    requests_per_second: float = Field(default=2.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    #: Retries of a request on a timeout, 429 or 5xx (exponential back-off, ``Retry-After``).
    max_retries: int = Field(default=3, ge=0)
    backoff_seconds: float = Field(default=1.0, ge=0)
    max_backoff_seconds: float = Field(default=30.0, ge=0)
    #: A ``Retry-After`` longer than this gives up on the page for this run.
    max_retry_after_seconds: float = Field(default=120.0, ge=0)
    #: Consecutive failed pages that open the circuit: the CMS is left alone for the cooldown.
    circuit_failures: int = Field(default=5, ge=1)
    circuit_cooldown_seconds: float = Field(default=300.0, ge=0)
    #: Articles published less than this long ago are fetched again (titles still change).
    refetch_recent_hours: float = Field(default=24.0, ge=0)
    #: Pages fetched in one run at most (the rest are asked on the next run).
    max_pages_per_run: int = Field(default=2000, ge=0)
    user_agent: str = "recs-pipeline (+https://github.com/; article metadata for recommendations)"

    @model_validator(mode="after")
    def _fetcher_needs_base_url(self) -> PagesConfig:
        if self.fetcher != "none" and not self.base_url:
            raise ValueError(f"the {self.fetcher} page fetcher needs `base_url`")
        re.compile(self.slug_pattern)
        return self


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
    #: Days of reads that are never recommended again (the read set, longer than the window).
    read_days: int = Field(default=90, gt=0, le=3660)


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
    #: Fresh popularity of the served chain (clicks decayed to the moment of each list): what
    #: every reader gets when there is no ranker, and what fills short lists.
    fresh_half_life_hours: float = Field(default=0.1, gt=0)


class SimilarConfig(_Strict):
    half_life_days: float = Field(default=60.0, gt=0)
    top_k: int = Field(default=10, gt=0)
    #: Only articles read in this many days before the as-of moment get lists and appear in
    #: them (none: every article of the ALS model).
    recent_days: float | None = Field(default=None, gt=0)


class RankerConfig(_Strict):
    """LightGBM LambdaRank over the candidates (``core/ranker.py``); off = the ALS/popular path."""

    enabled: bool = True
    #: Clicks before the as-of moment that candidates, features and training anchors read.
    history_days: int = Field(default=3, gt=0, le=28)
    #: Labels are the clicks of this many hours after an anchor (the refresh period).
    label_hours: float = Field(default=2.0, gt=0)
    #: Hours between training anchors (label windows may overlap).
    anchor_step_hours: float = Field(default=2.0, gt=0)
    training_slots: int = Field(default=12, gt=0)
    validation_slots: int = Field(default=3, gt=0)
    max_users_per_slot: int = Field(default=800, gt=0)
    n_estimators: int = Field(default=100, gt=0)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, gt=1)
    min_child_samples: int = Field(default=50, gt=0)
    #: Readers with a click in this many hours are the ``active`` group (reported and gated
    #: apart from older readers and readers without history; every group is ranked).
    active_hours: float = Field(default=48.0, gt=0)

    @property
    def anchor_span_days(self) -> int:
        """Days from the oldest training anchor to the as-of moment (rounded up): the ALS and
        similar-articles models the ranker trains with are that many days older than its day,
        so they never saw a training label."""
        span_hours = (self.training_slots - 1) * self.anchor_step_hours + (
            self.validation_slots + 1
        ) * self.label_hours
        return math.ceil(span_hours / 24)

    @property
    def training_days(self) -> int:
        """Day partitions of clicks a training run reads: its anchors span plus the lookback
        each anchor's features need, plus the as-of day."""
        return self.history_days + self.anchor_span_days + 1

    #: Candidates per generator.
    pop_now_n: int = Field(default=30, ge=0)
    pop_hour_n: int = Field(default=50, ge=0)
    pop_day_n: int = Field(default=20, ge=0)
    fresh_n: int = Field(default=20, ge=0)
    covisit_n: int = Field(default=30, ge=0)
    next_n: int = Field(default=20, ge=0)
    similar_n: int = Field(default=20, ge=0)
    als_n: int = Field(default=20, ge=0)


class GateConfig(_Strict):
    """Blocking checks before ``published_recommendations`` (``assets/checks.py``)."""

    #: The ranker's validation NDCG@10 and the served lists' evaluation NDCG@10 (every test
    #: reader) must be >= the best baseline's (tuned pop_decay included) x (1 + min_lift).
    min_lift: float = Field(default=0.0, ge=-1.0)
    #: In each reader group with at least ``min_group_readers`` test readers, the served lists
    #: must be >= that group's best baseline x (1 + min_group_lift).
    min_group_lift: float = Field(default=-0.02, ge=-1.0)
    #: (Fewer readers than this make a day's group score too noisy to gate or to move on.)
    min_group_readers: int = Field(default=1000, ge=1)
    #: Distinct recommended articles (top 10 of validation readers) / distinct articles read.
    min_coverage: float = Field(default=0.2, ge=0.0)
    #: Readers with a list / readers in the window.
    min_user_share: float = Field(default=0.9, ge=0.0, le=1.0)
    min_users: int = Field(default=1, ge=0)


class EvaluationConfig(_Strict):
    """The ``recommendation_evaluation`` asset (evaluation.md): baselines and their settings."""

    k: int = Field(default=10, gt=0)
    pop_decay_half_life_hours: float = Field(default=1.0, gt=0)
    #: Half-lives of the tuned pop_decay baselines scored in the same run (the gate compares
    #: with the best one: news popularity is best measured in minutes).
    pop_decay_half_lives_hours: tuple[float, ...] = (0.05, 0.1, 0.25, 1.0, 3.0)
    #: Clicks that pop_decay and covisit read (7 days in evaluation.md).
    lookback_days: int = Field(default=7, gt=0)


class ModelsConfig(_Strict):
    als: AlsConfig = AlsConfig()
    popular: PopularConfig = PopularConfig()
    similar: SimilarConfig = SimilarConfig()
    ranker: RankerConfig = RankerConfig()
    gate: GateConfig = GateConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    #: Recommendations stored per user.
    per_user: int = Field(default=20, gt=0)


class PublishConfig(_Strict):
    #: Versions kept per (site, model type), the current one included.
    keep_versions: int = Field(default=3, ge=1)
    #: The published recommendations are stale (a warning in the UI) after this many hours
    #: without a new publish, and failing after ``freshness_fail_hours``.
    freshness_warn_hours: float = Field(default=3.0, gt=0)
    freshness_fail_hours: float = Field(default=6.0, gt=0)


class AutomationConfig(_Strict):
    #: Cron (site time zone) of the recommendation refresh.
    refresh_cron: str = "0 */2 * * *"
    #: Cron (site time zone) of the daily re-ingestion of yesterday's files.
    ingest_cron: str = "30 0 * * *"
    #: Seconds between two looks at the landing folder.
    sensor_interval_seconds: int = Field(default=300, gt=0)
    #: Whether schedules and sensors start running when the code location loads.
    running_by_default: bool = False


class ServingConfig(_Strict):
    """The serving API's settings for this site (docs/serving.md); every field has a default."""

    #: Name of an environment variable holding the bearer key that event writes must present
    #: (``Authorization: Bearer <key>``); unset: writes are open (a loopback deployment).
    write_key_env: str | None = None
    #: Largest accepted ``POST .../events`` body; larger ones get 413.
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    #: Most events in one post (more: 413).
    max_events: int = Field(default=10_000, gt=0)
    #: ``k`` above this is capped (not refused).
    max_k: int = Field(default=100, gt=0, le=1_000)
    #: Half-lives of live popularity, minutes (the first one scores recommendations).
    half_lives_minutes: tuple[float, ...] = (3.0, 30.0, 120.0)
    #: Clicks of one reader this many minutes apart or less co-visit each other.
    covisit_window_minutes: float = Field(default=30.0, gt=0)
    #: Half-life of co-visitation weights, minutes.
    covisit_half_life_minutes: float = Field(default=120.0, gt=0)
    #: Half-lives of the next-click transitions the session ranker reads (a reader's very next
    #: click within the co-visit window): a short memory and a long one.
    successor_half_lives_minutes: tuple[float, ...] = Field(
        default=(120.0, 1440.0), min_length=1, max_length=4
    )
    #: Co-visits point forward in time (the articles read *after* one); this weighs the
    #: reverse direction too (0: not at all).
    covisit_backward_weight: float = Field(default=0.0, ge=0)
    #: A reader's session ends after this many minutes without a click (without a session_id).
    session_gap_minutes: float = Field(default=30.0, gt=0)
    #: Recent clicks kept per reader.
    recent_clicks: int = Field(default=20, gt=0, le=500)
    #: The session's last clicks whose co-visits score a list (1: the last click only).
    session_depth: int = Field(default=1, ge=1, le=20)
    #: Weights of the blend: live popularity, session co-visitation, the personal list.
    live_weight: float = Field(default=1.0, ge=0)
    session_weight: float = Field(default=1.0, ge=0)
    personal_weight: float = Field(default=0.0, ge=0)
    #: Live-popularity candidates scored per request.
    candidates: int = Field(default=200, gt=0)
    #: Hours of the lake's newest raw events replayed into live state at start-up.
    warm_hours: float = Field(default=6.0, ge=0)
    #: Score requests with the session ranker published beside the user lists, when the batch
    #: trained one that beat the blend (``serving/session_ranker.py``); false: the blend.
    session_ranker: bool = True
    #: Days of sessions before the as-of day the batch trains the session ranker on (0: none);
    #: the as-of day's own sessions are held out to compare it with the blend.
    session_ranker_days: int = Field(default=3, ge=0, le=28)
    #: Requests (sessions' last clicks) sampled for training, and for the held-out comparison.
    session_ranker_requests: int = Field(default=5_000, gt=0)
    session_ranker_validation_requests: int = Field(default=2_000, gt=0)
    session_ranker_trees: int = Field(default=100, gt=0)

    @field_validator("half_lives_minutes")
    @classmethod
    def _some_half_lives(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("half_lives_minutes needs at least one positive half-life")
        return value


class DataChecksConfig(_Strict):
    """Non-blocking checks on each day's events (``assets/data_checks.py``)."""

    #: A finished day's events must be within ``volume_ratio`` x of the median of the
    #: previous ``volume_days`` days that have events (both ways).
    volume_days: int = Field(default=7, ge=2)
    volume_ratio: float = Field(default=3.0, gt=1.0)
    #: Quarantined lines / all lines of a day.
    max_quarantine_share: float = Field(default=0.05, ge=0.0, le=1.0)


class SiteConfig(_Strict):
    """One news site: its events, thresholds, models and automation."""

    name: str
    description: str = ""
    #: Who answers for the site's assets in the UI (``team:…`` or an e-mail address).
    owners: list[str] = Field(default_factory=lambda: ["team:data"])
    timezone: str = "UTC"
    #: First day partition.
    start_date: dt.date
    events: EventSourceConfig
    pages: PagesConfig = PagesConfig()
    engagement: EngagementConfig = EngagementConfig()
    models: ModelsConfig = ModelsConfig()
    publish: PublishConfig = PublishConfig()
    automation: AutomationConfig = AutomationConfig()
    serving: ServingConfig = ServingConfig()
    checks: DataChecksConfig = DataChecksConfig()

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


class SiteConfigError(ValueError):
    """A site file that cannot be used, said in one paragraph naming the file (and where in it)."""

    def __init__(self, path: Path, message: str, name: str | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        #: The site the file declares (or its file name's stem), to match it by name.
        self.name = name or path.stem


@dataclass(frozen=True)
class SiteFiles:
    """What a sites folder holds: the sites that load and the files that do not."""

    sites: list[SiteConfig]
    broken: list[SiteConfigError]

    def broken_named(self, name: str) -> SiteConfigError | None:
        """The broken file of a site of that name (declared, or by file name), if any."""
        return next((b for b in self.broken if name in (b.name, b.path.stem)), None)


def _where(node: yaml.Node | None, loc: Iterable[int | str]) -> str:
    """``line L, column C`` of the YAML node at a validation error's location (the deepest
    node found), or "" when the document has no such node."""
    found: yaml.Node | None = node
    for part in loc:
        if isinstance(found, yaml.MappingNode):
            found = next((v for k, v in found.value if k.value == str(part)), found)
        elif isinstance(found, yaml.SequenceNode) and isinstance(part, int):
            found = found.value[part] if part < len(found.value) else found
        else:
            break
    if found is None:
        return ""
    return f"line {found.start_mark.line + 1}, column {found.start_mark.column + 1}"


def _validation_message(error: ValidationError, root: yaml.Node | None) -> str:
    """Every problem of a validation error on one line: field, where it is, what is wrong."""
    problems = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not str(part).startswith("function-")]
        field = ".".join(str(part) for part in loc) or "(the file)"
        where = _where(root, loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"field `{field}`{f' ({where})' if where else ''}: {message}")
    count = "a field is" if len(problems) == 1 else f"{len(problems)} fields are"
    return f"{count} wrong: " + "; ".join(problems)


def load_site(path: Path, environ: Mapping[str, str] | None = None) -> SiteConfig:
    """Read one site file. Raises ``SiteConfigError``: one paragraph naming the file and the
    line and column of a YAML syntax error, or each wrong field (and its line)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SiteConfigError(path, f"cannot read the file: {error}") from None
    # The name a file that does not parse seems to declare, to match it by name.
    named = re.search(r"^name:\s*['\"]?([a-z][a-z0-9_]*)['\"]?\s*$", text, re.MULTILINE)
    seems = named.group(1) if named else None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise SiteConfigError(path, f"{where}YAML syntax error: {what}", seems) from None
    except yaml.YAMLError as error:
        raise SiteConfigError(path, f"YAML error: {error}", seems) from None
    except (ValueError, TypeError) as error:  # a value YAML cannot build, e.g. 2026-13-01
        raise SiteConfigError(path, f"a value cannot be read: {error}", seems) from None
    if not isinstance(document, dict):
        raise SiteConfigError(path, "a site file is a YAML mapping (name: …, events: …)")
    declared = document.get("name")
    name = declared if isinstance(declared, str) else None
    try:
        return SiteConfig.model_validate(expand_env(document, environ))
    except ValidationError as error:
        raise SiteConfigError(path, _validation_message(error, root), name) from None
    except ValueError as error:  # an environment variable without a value
        raise SiteConfigError(path, str(error), name) from None


def read_sites(directory: Path, environ: Mapping[str, str] | None = None) -> SiteFiles:
    """Every ``*.yaml`` site of a folder, sorted by name, and the files that do not load (a
    broken file, or a second file declaring a site already declared), each with its reason:
    one bad file never hides the other sites."""
    sites: dict[str, tuple[Path, SiteConfig]] = {}
    broken: list[SiteConfigError] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            site = load_site(path, environ)
        except SiteConfigError as error:
            broken.append(error)
            continue
        if site.name in sites:
            first = sites[site.name][0]
            broken.append(
                SiteConfigError(
                    path, f"declares the site {site.name!r}, as {first} does", site.name
                )
            )
            continue
        sites[site.name] = (path, site)
    return SiteFiles([sites[name][1] for name in sorted(sites)], broken)


def load_sites(directory: Path, environ: Mapping[str, str] | None = None) -> list[SiteConfig]:
    """Every ``*.yaml`` site in a folder, sorted by name; the first broken file (or duplicate
    name) raises its ``SiteConfigError`` (``read_sites`` keeps the others)."""
    files = read_sites(directory, environ)
    if files.broken:
        raise files.broken[0]
    return files.sites
