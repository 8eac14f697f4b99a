"""Deterministic synthetic news-site clickstream, written as Snowplow enriched events.

The pipeline needs data that behaves like a real site so that its tests mean something: ALS must
beat random on a time hold-out only because the data has a real (but noisy) signal, and the
validation stage must meet every kind of dirt it is built for. The model, in short:

* Articles are published every day (daytime-weighted in the site's time zone), each in a section
  and a topic of that section, with a lognormal intrinsic popularity and attention that decays
  with age (fast half-life plus a slow tail), so yesterday's news is mostly dead.
* Users have lognormal activity (few heavy readers, many light ones) and interests concentrated on
  1-3 sections with a favourite topic in each; they come back over days in daytime-weighted
  sessions of a few page views. A view picks an article with probability proportional to
  interest in its section x its current popularity, never the same article twice in a session.
* Each page view is followed by ``page_ping`` heartbeats while the reader stays (heavy-tailed
  dwell, capped), bots crawl many pages quickly, some lines are re-delivered (duplicates) and some
  are malformed in named ways.

Generation runs hour by hour in UTC with numpy; only sessions that spill over an hour boundary are
carried, so memory depends on the hourly volume and the size of the audience, never on the total
number of events. Every random draw comes from
generators seeded by ``(seed, ...)``, and gzip members carry no mtime or file name, so the same
configuration always produces byte-identical files. The statistics are counted from what is
actually written, so downstream tests can assert exact equalities against them.

This module is the public face (configuration, statistics, files); the traffic model itself lives
in :mod:`recs_pipeline.core.synthetic_model`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from tqdm import tqdm

from recs_pipeline.core.synthetic_model import (
    EXTERNAL_REFERRERS,
    HOUR_MS,
    Events,
    FloatArray,
    IntArray,
    World,
    build_world,
    events_starting_in_hour,
)

#: Reasons a malformed line is written for, in the order a line-oriented validator checks them.
MALFORMED_REASONS: Final = (
    "invalid_json",
    "not_utf8",
    "missing_field",
    "bad_timestamp",
    "wrong_type",
)
#: Case-insensitive substrings that mark a crawler's user agent (every bot UA has one).
BOT_UA_MARKERS: Final = ("bot", "crawler", "spider")
#: The trailing numeric article id of an article path.
ARTICLE_ID_PATTERN: Final = r"-(\d+)$"
#: ``collector_tstamp`` format (UTC, milliseconds), as Snowplow writes it.
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"
MANIFEST_NAME: Final = "_manifest.json"
MANIFEST_VERSION: Final = 1

DEFAULT_SECTIONS: Final = (
    "politics",
    "business",
    "sports",
    "world",
    "technology",
    "culture",
    "science",
    "health",
    "opinion",
    "local",
)
#: Collector timestamps a validator must reject (none parses as a date, even leniently).
_BAD_TIMESTAMPS: Final = ("yesterday", "not-a-timestamp", "2026-13-45 25:61:61.000", "??:??")
_WRITE_CHUNK: Final = 16_384  # lines formatted at once (bounds the strings held in memory)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Only the first block matters for most uses; the rest tunes the model."""

    start: dt.date
    days: int
    users: int
    articles_per_day: int
    #: Approximate valid page_view + page_ping events per day, bots included (drives session
    #: counts; weekends get 15 % less, weekdays 6 % more). ``None``: ``users *
    #: sessions_per_user_per_day`` sessions a day.
    events_per_day: int | None = None
    timezone: str = "America/Sao_Paulo"
    host: str = "demo.example.com"
    heartbeat_seconds: int = 10
    malformed_share: float = 0.005
    duplicate_share: float = 0.002
    bot_share: float = 0.01
    seed: int = 7
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    topics_per_section: int = 4
    sessions_per_user_per_day: float = 0.3
    non_article_share: float = 0.04
    mean_views_per_session: float = 3.0
    max_views_per_session: int = 30
    #: Cap on a user's activity relative to the mean, so no reader devours the whole site.
    max_activity_ratio: float = 25.0
    activity_sigma: float = 1.3
    popularity_sigma: float = 1.6
    half_life_hours: float = 6.0
    tail_half_life_hours: float = 72.0
    tail_weight: float = 0.08
    #: How much a user prefers their favourite topic inside an interest section.
    topic_boost: float = 3.0
    bounce_share: float = 0.35
    median_dwell_seconds: float = 30.0
    dwell_sigma: float = 1.1
    max_dwell_seconds: int = 1200
    #: Articles published before ``start`` so the first hours have something to read.
    backlog_days: int = 3
    bot_users: int = 6
    lines_per_file: int = 200_000
    compresslevel: int = 6

    def __post_init__(self) -> None:
        """Fail early on settings that would silently produce nonsense."""
        ZoneInfo(self.timezone)  # raises on an unknown zone
        positive = {
            "days": self.days,
            "users": self.users,
            "articles_per_day": self.articles_per_day,
            "heartbeat_seconds": self.heartbeat_seconds,
            "topics_per_section": self.topics_per_section,
            "max_views_per_session": self.max_views_per_session,
            "lines_per_file": self.lines_per_file,
            "bot_users": self.bot_users,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("malformed_share", "duplicate_share", "bot_share", "non_article_share"):
            share = getattr(self, name)
            if not 0.0 <= share < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {share}")
        if self.events_per_day is not None and self.events_per_day < 0:
            raise ValueError("events_per_day must be >= 0")
        if not self.sections or len(set(self.sections)) != len(self.sections):
            raise ValueError("sections must be distinct and non-empty")
        # Names go into paths unescaped; a trailing "-<digits>" would look like an article id.
        if not all(re.fullmatch(r"[a-z]+(?:-[a-z]+)*", name) for name in self.sections):
            raise ValueError(
                f"section names must be lowercase words joined by '-': {self.sections}"
            )
        if not re.fullmatch(r"[A-Za-z0-9.-]+(?::\d+)?", self.host):
            raise ValueError(f"not a plain host name: {self.host!r}")
        if self.max_dwell_seconds < self.heartbeat_seconds or self.mean_views_per_session < 1:
            raise ValueError("max_dwell_seconds must cover a heartbeat; sessions need a view")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        data = dataclasses.asdict(self)
        data["start"] = self.start.isoformat()
        data["sections"] = list(self.sections)
        return data


@dataclass
class GenerationStats:
    """Exact counts of what was written. ``lines == valid_events + duplicate_lines + malformed``.

    ``users`` and ``articles`` are the distinct ``domain_userid`` values (bots included) and
    distinct article ids found in valid events; ``articles_published`` counts the whole catalogue.
    """

    lines: int
    valid_events: int
    page_views: int
    page_pings: int
    article_page_views: int
    non_article_page_views: int
    bot_events: int
    duplicate_lines: int
    malformed: dict[str, int]
    files: int
    users: int
    articles: int
    first_event: dt.datetime
    last_event: dt.datetime
    articles_published: int = 0
    bot_users: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        data = dataclasses.asdict(self)
        data["first_event"] = self.first_event.isoformat()
        data["last_event"] = self.last_event.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationStats:
        """Inverse of :meth:`to_json`."""
        values = dict(data)
        for name in ("first_event", "last_event"):
            values[name] = dt.datetime.fromisoformat(values[name])
        return cls(**values)


def is_bot_useragent(useragent: str) -> bool:
    """Whether a user agent carries one of :data:`BOT_UA_MARKERS` (as every generated bot does)."""
    lowered = useragent.lower()
    return any(marker in lowered for marker in BOT_UA_MARKERS)


def read_manifest_stats(out_dir: Path) -> GenerationStats:
    """The statistics a previous :func:`generate` recorded in ``out_dir``."""
    manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    return GenerationStats.from_json(manifest["stats"])


# --------------------------------------------------------------------------------------------
# Writing lines and counting them.


def _corrupt(line: str, reason: str, u: float) -> str:
    """Turn a valid line into a malformed one that no validator can mistake for valid.

    ``not_utf8`` puts the invalid bytes between two members (as lone surrogates that
    ``surrogateescape`` encodes to raw 0xFF 0xFE), so even a lenient decoder gets bad JSON.
    """
    if reason == "invalid_json":  # cut before the closing brace, never valid
        return line[: 10 + int(u * (len(line) - 11))]
    if reason == "not_utf8":
        return line.replace(',"useragent":', ',\udcff\udcfe"useragent":', 1)
    record = orjson.loads(line)
    if reason == "missing_field":
        del record["domain_userid" if u < 0.5 else "collector_tstamp"]
    elif reason == "bad_timestamp":
        record["collector_tstamp"] = _BAD_TIMESTAMPS[int(u * len(_BAD_TIMESTAMPS))]
    elif reason == "wrong_type":
        user = record["domain_userid"]
        record["domain_userid"] = int(u * 1e9) if u < 0.5 else {"id": user}
    else:
        raise ValueError(reason)
    return orjson.dumps(record).decode()


class _HourLines:
    """Formats one hour's events as JSON lines (malformed ones corrupted) in chunks.

    Every field is a controlled ASCII string without quotes or backslashes (checked when the world
    is built), so an f-string is valid JSON and several times faster than a serialiser.
    """

    def __init__(
        self,
        writer: _Writer,
        events: Events,
        hour_ms: int,
        reasons: IntArray,
        variate: FloatArray,
    ) -> None:
        world = writer.world
        self.world, self.events, self.reasons, self.variate = world, events, reasons, variate
        self.ext_tokens, self.names = writer.ext_tokens, writer.names
        users, inverse = np.unique(events.user, return_inverse=True)
        self.uid = np.array(world.user_uuids(users), dtype=object)[inverse]
        self.agent = world.user_agents(users)[inverse]
        self.prefix = _utc(hour_ms).strftime("%Y-%m-%d %H:")
        offset = events.ts - hour_ms
        self.minute, self.second, self.milli = offset // 60_000, offset // 1000 % 60, offset % 1000
        self.serials = writer.next_id + np.arange(len(events), dtype=np.int64)
        writer.next_id += len(events)

    def format(self, idx: IntArray) -> list[str]:
        """Lines for events ``idx`` (an index may repeat: that is a duplicate delivery)."""
        world, events, prefix = self.world, self.events, self.prefix
        ref = events.ref[idx]
        refs = np.where(
            ref >= 0,
            world.quoted_urls[np.maximum(ref, 0)],
            self.ext_tokens[np.maximum(-1 - ref, 0)],
        )
        page = events.page[idx]
        lines = [
            f'{{"event_id":"{e}","collector_tstamp":"{prefix}{m:02d}:{s:02d}.{ms:03d}",'
            f'"domain_userid":"{u}","event_name":"{name}","page_urlpath":"{p}",'
            f'"page_url":"{url}","page_referrer":{r},"useragent":"{a}"}}'
            for e, m, s, ms, u, name, p, url, r, a in zip(
                world.event_ids(self.serials[idx]),
                self.minute[idx].tolist(),
                self.second[idx].tolist(),
                self.milli[idx].tolist(),
                self.uid[idx].tolist(),
                self.names[events.ping[idx].astype(np.int64)].tolist(),
                world.paths[page].tolist(),
                world.urls[page].tolist(),
                refs.tolist(),
                self.agent[idx].tolist(),
                strict=True,
            )
        ]
        for j in np.nonzero(self.reasons[idx] >= 0)[0].tolist():
            k = int(idx[j])
            lines[j] = _corrupt(lines[j], MALFORMED_REASONS[self.reasons[k]], self.variate[k])
        return lines


class _Writer:
    """Writes hour folders and counts exactly what it writes."""

    def __init__(self, world: World, out_dir: Path) -> None:
        config = world.config
        self.world = world
        self.out_dir = out_dir
        self.counts = dict.fromkeys(
            ("lines", "valid", "views", "pings", "article_views", "hub_views", "bots", "dups"), 0
        )
        self.malformed = dict.fromkeys(MALFORMED_REASONS, 0)
        self.files = 0
        self.next_id = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.users_seen = np.zeros(config.users + config.bot_users, dtype=bool)
        self.articles_seen = np.zeros(world.n_articles, dtype=bool)
        self.ext_tokens = np.array(
            ["null" if url is None else f'"{url}"' for url, _ in EXTERNAL_REFERRERS], dtype=object
        )
        self.names = np.array(["page_view", "page_ping"], dtype=object)

    def write_hour(self, events: Events, hour_ms: int, rng: np.random.Generator) -> None:
        """Corrupt some lines, re-deliver others, write the hour's part files, count it all."""
        n = len(events)
        if n == 0:
            return
        config = self.world.config
        events = events.take(np.argsort(events.ts, kind="stable"))
        malformed = rng.random(n) < config.malformed_share
        reasons = np.full(n, -1, dtype=np.int64)
        reasons[malformed] = rng.integers(0, len(MALFORMED_REASONS), int(malformed.sum()))
        variate = np.zeros(n)
        variate[malformed] = rng.random(int(malformed.sum()))
        dup = np.nonzero(~malformed & (rng.random(n) < config.duplicate_share))[0]
        # A re-delivered line lands a little later in the same hour's files.
        order = np.concatenate([np.arange(n), dup])
        keys = np.concatenate(
            [np.arange(n, dtype=np.float64), dup + rng.uniform(1, 2000, len(dup))]
        )
        order = order[np.argsort(keys, kind="stable")]
        self._count(events.take(~malformed), reasons[malformed], len(dup))
        lines = _HourLines(self, events, hour_ms, reasons, variate)
        folder = self.out_dir / _utc(hour_ms).strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        per_file = config.lines_per_file
        for part, p0 in enumerate(range(0, len(order), per_file)):
            path = folder / f"events-{part:04d}.json.gz"
            p1 = min(p0 + per_file, len(order))
            with (
                path.open("wb") as raw,
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=config.compresslevel
                ) as gz,
            ):
                for c0 in range(p0, p1, _WRITE_CHUNK):
                    text = "\n".join(lines.format(order[c0 : min(c0 + _WRITE_CHUNK, p1)]))
                    gz.write((text + "\n").encode("utf-8", "surrogateescape"))
            self.files += 1

    def _count(self, good: Events, reasons: IntArray, duplicates: int) -> None:
        """Add one hour's valid events, malformed reasons and duplicate lines to the totals."""
        view = ~good.ping
        is_article = good.page < self.world.n_articles
        self.counts["lines"] += len(good) + len(reasons) + duplicates
        self.counts["valid"] += len(good)
        self.counts["views"] += int(view.sum())
        self.counts["pings"] += int(good.ping.sum())
        self.counts["article_views"] += int((view & is_article).sum())
        self.counts["hub_views"] += int((view & ~is_article).sum())
        self.counts["bots"] += int((good.user >= self.world.config.users).sum())
        self.counts["dups"] += duplicates
        per_reason = np.bincount(reasons, minlength=len(MALFORMED_REASONS)).tolist()
        for reason, count in zip(MALFORMED_REASONS, per_reason, strict=True):
            self.malformed[reason] += count
        self.users_seen[good.user] = True
        self.articles_seen[good.page[is_article]] = True
        if len(good):
            lo, hi = int(good.ts.min()), int(good.ts.max())
            self.first_ms = lo if self.first_ms is None else min(self.first_ms, lo)
            self.last_ms = hi if self.last_ms is None else max(self.last_ms, hi)

    def stats(self) -> GenerationStats:
        world, c = self.world, self.counts
        start = dt.datetime.fromtimestamp(world.start_ms / 1000, tz=dt.UTC)
        first = start if self.first_ms is None else _utc(self.first_ms)
        last = start if self.last_ms is None else _utc(self.last_ms)
        return GenerationStats(
            lines=c["lines"],
            valid_events=c["valid"],
            page_views=c["views"],
            page_pings=c["pings"],
            article_page_views=c["article_views"],
            non_article_page_views=c["hub_views"],
            bot_events=c["bots"],
            duplicate_lines=c["dups"],
            malformed=dict(self.malformed),
            files=self.files,
            users=int(self.users_seen.sum()),
            articles=int(self.articles_seen.sum()),
            first_event=first,
            last_event=last,
            articles_published=world.n_articles,
            bot_users=int(self.users_seen[world.config.users :].sum()),
        )


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def generate(config: GeneratorConfig, out_dir: Path, progress: bool = False) -> GenerationStats:
    """Write ``config.days`` local days of traffic under ``out_dir`` and return exact counts.

    Files: ``<out>/YYYY/MM/DD/HH/events-NNNN.json.gz`` (UTC hour of ``collector_tstamp``) and
    ``<out>/_manifest.json`` (config + stats). ``out_dir`` must be empty or absent, so that the
    manifest always describes every file in it.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    world = build_world(config)
    writer = _Writer(world, out_dir)
    first_hour, end_hour = world.start_ms // HOUR_MS, -(-world.end_ms // HOUR_MS)
    pending = Events.empty()  # events of sessions still running at the end of the last hour
    with tqdm(total=end_hour - first_hour, unit="h", desc="generate", disable=not progress) as bar:
        for hour in range(first_hour, end_hour):
            t0, t1 = hour * HOUR_MS, (hour + 1) * HOUR_MS
            rng = np.random.default_rng([config.seed, hour])
            parts = [pending, events_starting_in_hour(world, hour, rng)]
            events = Events.concat(parts)
            events = events.take(events.ts < world.end_ms)
            now = events.ts < t1
            pending = events.take(~now)
            writer.write_hour(events.take(now), t0, rng)
            bar.update(1)
            bar.set_postfix(lines=writer.counts["lines"], refresh=False)
    stats = writer.stats()
    manifest = {
        "generator": __name__,
        "version": MANIFEST_VERSION,
        "layout": "YYYY/MM/DD/HH/events-NNNN.json.gz",
        "config": config.to_json(),
        "stats": stats.to_json(),
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return stats
