"""The traffic model behind :mod:`recs_pipeline.core.synthetic` (internal to it).

It draws the site once (articles, pages, users, bots: :func:`build_world`), then the sessions
that start in one UTC hour at a time (:func:`events_starting_in_hour`) as numpy columns.
Everything random comes from the generators it is handed, so the caller controls determinism;
nothing here touches files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from recs_pipeline.core.synthetic import GeneratorConfig

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SECTION_WEIGHTS: Final = (1.6, 1.2, 1.5, 1.0, 0.9, 0.8, 0.6, 0.7, 0.6, 1.1)
#: Share of readers per local hour (0-23): night trough, morning and evening peaks.
READING_BY_HOUR: Final = (
    *(0.9, 0.5, 0.3, 0.2, 0.2, 0.4, 1.2, 2.6, 3.6, 3.8, 3.5, 3.3),
    *(3.6, 3.5, 3.2, 3.0, 2.9, 3.0, 3.2, 3.6, 3.9, 3.6, 2.7, 1.7),
)
#: Newsroom output per local hour.
_PUBLISHING_BY_HOUR: Final = (
    *(0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 1.5, 2.0, 2.2, 2.2, 2.0),
    *(1.8, 2.0, 2.0, 2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.5, 0.3),
)
#: Mon..Sun traffic factors (mean 1, so ``events_per_day`` stays the average).
WEEKDAY_FACTOR: Final = (1.06, 1.06, 1.06, 1.06, 1.06, 0.85, 0.85)
_WORDS: Final = (
    *("council", "votes", "budget", "new", "plan", "city", "school", "storm", "market", "rally"),
    *("court", "ruling", "team", "wins", "final", "coach", "signs", "deal", "price", "rise"),
    *("rates", "bank", "cuts", "jobs", "report", "study", "finds", "health", "risk", "water"),
    *("energy", "project", "mayor", "minister", "talks", "strike", "ends", "opens", "museum"),
    *("festival", "film", "music", "review", "season", "record", "police", "bridge", "traffic"),
    *("election", "poll", "shows", "lead", "debate", "tech", "startup", "launches", "app", "data"),
    *("climate", "summit", "heat", "wave", "hospital", "vaccine", "doctors", "warn", "over"),
)
AUTHORS: Final = (
    *("ana-souza", "bruno-lima", "carla-mendes", "diego-costa", "elisa-rocha", "felipe-alves"),
    *("gabriela-nunes", "henrique-dias", "isabela-martins", "joao-pereira", "karina-lopes"),
    *("lucas-ferreira", "marina-gomes", "nicolas-ribeiro", "olivia-barros", "paulo-cardoso"),
)
#: Human browsers and their shares.
HUMAN_USERAGENTS: Final = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        0.30,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
        0.25,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        0.22,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        0.10,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        0.08,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        0.05,
    ),
)
BOT_USERAGENTS: Final = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
    "Mozilla/5.0 (compatible; NewsCrawler/1.4; +https://crawler.example.net/about)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
)
#: Where sessions come from; ``None`` is a direct visit (null referrer).
EXTERNAL_REFERRERS: Final = (
    (None, 0.35),
    ("https://www.google.com/", 0.33),
    ("https://www.facebook.com/", 0.12),
    ("https://news.google.com/", 0.09),
    ("https://t.co/", 0.06),
    ("https://www.bing.com/", 0.05),
)

HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * HOUR_MS
_MAX_SLOTS: Final = 3  # interest sections per user
_MIX_1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2: Final = np.uint64(0x94D049BB133111EB)
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)


# --------------------------------------------------------------------------------------------
# The world: articles, pages and users, fixed for the whole run.


def mix64(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser: a bijection on uint64, so distinct inputs give distinct ids."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def hex128(high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]) -> list[str]:
    """32 lowercase hex chars per row, formatted in one C call rather than per value."""
    buf = np.empty((len(high), 2), dtype=">u8")
    buf[:, 0] = high
    buf[:, 1] = low
    text = buf.tobytes().hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def _local_midnight_ms(day: dt.date, zone: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp() * 1000)


def _decay(age_hours: FloatArray, config: GeneratorConfig) -> FloatArray:
    """Attention left at an age: a fast exponential for the news cycle plus a slow tail."""
    fast = np.exp2(-age_hours / config.half_life_hours)
    slow = np.exp2(-age_hours / config.tail_half_life_hours)
    return (1.0 - config.tail_weight) * fast + config.tail_weight * slow


@dataclass
class World:
    """Everything fixed for the run; arrays are indexed by article, page or user number."""

    config: GeneratorConfig
    zone: ZoneInfo
    start_ms: int
    end_ms: int
    # Articles sorted by publication time; pages = articles, then home, sections, authors.
    pub_ms: IntArray
    art_section: IntArray
    art_topic: IntArray
    art_pop: FloatArray
    paths: npt.NDArray[np.object_]
    urls: npt.NDArray[np.object_]
    quoted_urls: npt.NDArray[np.object_]
    # Users: cumulative activity, interest slots (section, weight, favourite topic), background.
    act_cum: FloatArray
    slot_section: npt.NDArray[np.int8]
    slot_weight: npt.NDArray[np.float32]
    slot_fav: npt.NDArray[np.int8]
    background: npt.NDArray[np.float32]
    salts: npt.NDArray[np.uint64]
    ua_cum: FloatArray
    sessions_per_day: float
    bot_events_per_day: float

    @property
    def n_articles(self) -> int:
        return len(self.pub_ms)

    @property
    def home_page(self) -> int:
        return self.n_articles

    def user_uuids(self, users: IntArray) -> list[str]:
        """Stable UUID-shaped ``domain_userid`` per user number."""
        u = users.astype(np.uint64)
        text = hex128(mix64(u + self.salts[0]), mix64(u + self.salts[1]))
        return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in text]

    def event_ids(self, serials: IntArray) -> list[str]:
        """32-hex ``event_id`` per serial number: distinct serials give distinct ids (the low
        half is a bijection of the serial), yet they look random like Snowplow's UUIDs."""
        s = serials.astype(np.uint64)
        return hex128(mix64(s + self.salts[3]), mix64(s + self.salts[4]))

    def user_agents(self, users: IntArray) -> npt.NDArray[np.object_]:
        """Each human keeps one browser; each bot one crawler UA."""
        humans = self.config.users
        uniform = (mix64(users.astype(np.uint64) + self.salts[2]) >> np.uint64(11)).astype(
            np.float64
        ) * 2.0**-53
        human_ua = np.searchsorted(self.ua_cum, uniform, side="right")
        human_ua = np.minimum(human_ua, len(HUMAN_USERAGENTS) - 1)
        table = np.array([ua for ua, _ in HUMAN_USERAGENTS] + list(BOT_USERAGENTS), dtype=object)
        bot_ua = len(HUMAN_USERAGENTS) + (users - humans) % len(BOT_USERAGENTS)
        return table[np.where(users < humans, human_ua, bot_ua)]


def _mean_events_per_session(config: GeneratorConfig) -> float:
    """Monte Carlo estimate (fixed stream) of events per session, to turn events into sessions."""
    rng = np.random.default_rng(12345)
    n = 200_000
    views = np.minimum(
        rng.geometric(1.0 / config.mean_views_per_session, n), config.max_views_per_session
    )
    pings = _draw_pings(rng, rng.random(n) < config.non_article_share, config)
    return float(views.mean() * (1.0 + pings.mean()))


def _draw_pings(
    rng: np.random.Generator, non_article: BoolArray, config: GeneratorConfig
) -> IntArray:
    """Heartbeats per view: many bounces, a lognormal body, a cap; hub pages are glanced at."""
    n = len(non_article)
    hb = config.heartbeat_seconds
    dwell = rng.lognormal(math.log(config.median_dwell_seconds), config.dwell_sigma, n)
    pings = np.minimum(dwell // hb, config.max_dwell_seconds // hb).astype(np.int64)
    pings[rng.random(n) < config.bounce_share] = 0
    hub = np.minimum(rng.geometric(0.6, n) - 1, 3)
    return np.where(non_article, hub, pings)


def _draw_interests(
    rng: np.random.Generator, section_p: FloatArray, config: GeneratorConfig
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.int8], FloatArray]:
    """Per user: 1-3 interest sections (popular ones more likely), their weights, a favourite
    topic in each, and a background share spread over all sections.

    Users are drawn in chunks so a million-user audience never builds a users x sections matrix.
    """
    users, n_sections = config.users, len(section_p)
    slot_section = np.full((users, _MAX_SLOTS), -1, dtype=np.int8)
    slot_weight = np.zeros((users, _MAX_SLOTS), dtype=np.float32)
    background = np.empty(users, dtype=np.float64)
    chunk = 16_384
    for lo in range(0, users, chunk):
        n = min(chunk, users - lo)
        n_slots = np.minimum(rng.choice([1, 2, 3], size=n, p=[0.35, 0.45, 0.20]), n_sections)
        # Gumbel top-k: sections without replacement, weighted by their popularity.
        keys = np.log(section_p)[None, :] + rng.gumbel(size=(n, n_sections))
        top = np.argsort(-keys, axis=1)[:, :_MAX_SLOTS]
        used = np.arange(top.shape[1])[None, :] < n_slots[:, None]
        raw = np.where(used, rng.exponential(1.0, top.shape), 0.0)
        bg = rng.uniform(0.05, 0.25, n)
        k = top.shape[1]
        slot_section[lo : lo + n, :k] = np.where(used, top, -1)
        slot_weight[lo : lo + n, :k] = raw / raw.sum(axis=1, keepdims=True) * (1.0 - bg)[:, None]
        background[lo : lo + n] = bg
    slot_fav = rng.integers(0, config.topics_per_section, (users, _MAX_SLOTS)).astype(np.int8)
    return slot_section, slot_weight, slot_fav, background


def build_world(config: GeneratorConfig) -> World:
    """Draw the catalogue and the audience once, from ``default_rng(seed)``."""
    rng = np.random.default_rng(config.seed)
    zone = ZoneInfo(config.timezone)
    n_sections = len(config.sections)
    section_p = np.resize(np.array(SECTION_WEIGHTS), n_sections)
    section_p = section_p / section_p.sum()

    # Articles, day by day, at daytime-weighted local hours.
    publish_p = np.array(_PUBLISHING_BY_HOUR) / sum(_PUBLISHING_BY_HOUR)
    pub_parts, day_parts = [], []
    for offset in range(-config.backlog_days, config.days):
        day = config.start + dt.timedelta(days=offset)
        hours = rng.choice(24, size=config.articles_per_day, p=publish_p)
        seconds = hours * 3600 + rng.integers(0, 3600, config.articles_per_day)
        pub_parts.append(_local_midnight_ms(day, zone) + seconds * 1000)
        day_parts.append(np.full(config.articles_per_day, offset))
    pub_ms = np.concatenate(pub_parts).astype(np.int64)
    order = np.argsort(pub_ms, kind="stable")
    pub_ms, day_offset = pub_ms[order], np.concatenate(day_parts)[order]
    n_articles = len(pub_ms)
    art_section = rng.choice(n_sections, size=n_articles, p=section_p).astype(np.int64)
    art_topic = rng.integers(0, config.topics_per_section, n_articles)
    art_pop = rng.lognormal(0.0, config.popularity_sigma, n_articles)
    art_ids = int(rng.integers(100_000, 200_000)) + np.cumsum(rng.integers(1, 12, n_articles))
    n_words = rng.integers(3, 7, n_articles)
    words = rng.integers(0, len(_WORDS), (n_articles, 6))
    paths: list[str] = []
    for i in range(n_articles):
        day = config.start + dt.timedelta(days=int(day_offset[i]))
        slug = "-".join(_WORDS[w] for w in words[i, : n_words[i]])
        section = config.sections[art_section[i]]
        paths.append(f"/{section}/{day:%Y/%m/%d}/{slug}-{art_ids[i]}")
    paths.append("/")
    paths.extend(f"/section/{name}" for name in config.sections)
    paths.extend(f"/author/{name}" for name in AUTHORS)
    for text in (*paths, *config.sections, config.host):
        if json.dumps(text)[1:-1] != text:
            raise ValueError(f"not JSON-safe as is: {text!r}")  # lines are formatted, not dumped
    urls = [f"https://{config.host}{path}" for path in paths]

    # Users: lognormal activity with a cap, 1-3 interest sections, a favourite topic in each.
    users = config.users
    activity = rng.lognormal(0.0, config.activity_sigma, users)
    activity = np.minimum(activity, config.max_activity_ratio * activity.mean())
    slot_section, slot_weight, slot_fav, background = _draw_interests(rng, section_p, config)
    salts = rng.integers(0, 2**63, 6, dtype=np.uint64)

    per_session = _mean_events_per_session(config)
    keep = 1.0 - config.malformed_share
    if config.events_per_day is None:
        sessions_per_day = users * config.sessions_per_user_per_day
        human_events = sessions_per_day * per_session * keep
        bot_events = human_events * config.bot_share / (1.0 - config.bot_share) / keep
    else:
        sessions_per_day = config.events_per_day * (1.0 - config.bot_share) / keep / per_session
        bot_events = config.events_per_day * config.bot_share / keep
    ua_p = np.array([share for _, share in HUMAN_USERAGENTS])
    return World(
        config=config,
        zone=zone,
        start_ms=_local_midnight_ms(config.start, zone),
        end_ms=_local_midnight_ms(config.start + dt.timedelta(days=config.days), zone),
        pub_ms=pub_ms,
        art_section=art_section,
        art_topic=art_topic,
        art_pop=art_pop,
        paths=np.array(paths, dtype=object),
        urls=np.array(urls, dtype=object),
        quoted_urls=np.array([f'"{url}"' for url in urls], dtype=object),
        act_cum=np.cumsum(activity),
        slot_section=slot_section,
        slot_weight=slot_weight,
        slot_fav=slot_fav,
        background=background.astype(np.float32),
        salts=salts,
        ua_cum=np.cumsum(ua_p / ua_p.sum()),
        sessions_per_day=sessions_per_day,
        bot_events_per_day=bot_events,
    )


# --------------------------------------------------------------------------------------------
# One hour of traffic.


@dataclass
class Events:
    """Columnar events: UTC epoch ms, user number, page number, ping flag, referrer code.

    Users ``>= config.users`` are bots. Referrer codes: ``>= 0`` a page of the site, ``-1 - k``
    entry ``k`` of ``EXTERNAL_REFERRERS`` (so ``-1`` is a null referrer).
    """

    ts: IntArray
    user: IntArray
    page: IntArray
    ping: BoolArray
    ref: IntArray

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, sel: BoolArray | IntArray) -> Events:
        return Events(self.ts[sel], self.user[sel], self.page[sel], self.ping[sel], self.ref[sel])

    @staticmethod
    def empty() -> Events:
        none = np.zeros(0, dtype=np.int64)
        return Events(none, none, none, np.zeros(0, dtype=bool), none)

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        return Events(
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.page for p in parts]),
            np.concatenate([p.ping for p in parts]),
            np.concatenate([p.ref for p in parts]),
        )


class Attention:
    """The pull of every readable article at one moment (popularity x decay), by section.

    Sampling is two-stage so it stays vectorised: a section from interest x section mass, then an
    article inside it from the cumulative attention (boosted on the reader's favourite topic).
    Only articles published before the moment are readable, so no view precedes publication.
    """

    def __init__(self, world: World, t_ms: int) -> None:
        config = world.config
        n_sections = len(config.sections)
        # Older articles keep (almost) no attention; skipping them keeps each hour cheap.
        window_ms = max(14 * _DAY_MS, int(6 * config.tail_half_life_hours * HOUR_MS))
        lo = int(np.searchsorted(world.pub_ms, t_ms - window_ms))
        hi = int(np.searchsorted(world.pub_ms, t_ms))
        idx = np.arange(lo, hi)
        age_hours = (t_ms + HOUR_MS / 2 - world.pub_ms[idx]) / HOUR_MS
        attention = world.art_pop[idx] * _decay(age_hours, config)
        section = world.art_section[idx]
        self.section_mass: FloatArray = np.bincount(
            section, weights=attention, minlength=n_sections
        ).astype(np.float64)
        order = np.argsort(section, kind="stable")
        bounds = np.searchsorted(section[order], np.arange(n_sections + 1))
        parts = [order[bounds[s] : bounds[s + 1]] for s in range(n_sections)]
        self._idx = [idx[p] for p in parts]
        self._attention = [attention[p] for p in parts]
        self._topic = [world.art_topic[idx[p]] for p in parts]
        self._cum: dict[tuple[int, int], FloatArray] = {}
        self.topics = config.topics_per_section
        self.boost = config.topic_boost
        self.recent = idx[world.pub_ms[idx] >= t_ms - 2 * _DAY_MS]

    @property
    def empty(self) -> bool:
        return not float(self.section_mass.sum()) > 0.0

    def _cumsum(self, section: int, fav: int) -> FloatArray:
        key = (section, fav)
        if key not in self._cum:
            weight = self._attention[section]
            if fav < self.topics:
                weight = weight * (1.0 + self.boost * (self._topic[section] == fav))
            self._cum[key] = np.cumsum(weight)
        return self._cum[key]

    def sample(self, sections: IntArray, favs: IntArray, rng: np.random.Generator) -> IntArray:
        """One article per (section, favourite topic or ``topics`` for none)."""
        out = np.empty(len(sections), dtype=np.int64)
        keys = sections * (self.topics + 1) + favs
        for key in np.unique(keys):
            section, fav = divmod(int(key), self.topics + 1)
            rows = np.nonzero(keys == key)[0]
            cum = self._cumsum(section, fav)
            pick = np.searchsorted(cum, rng.random(len(rows)) * cum[-1], side="right")
            out[rows] = self._idx[section][np.minimum(pick, len(cum) - 1)]
        return out


def _choose_sections(
    world: World, users: IntArray, mass: FloatArray, rng: np.random.Generator
) -> IntArray:
    """Section per view with P(s | user) proportional to interest(user, s) x attention mass(s)."""
    n_sections = len(mass)
    weight = (world.background[users].astype(np.float64) / n_sections)[:, None] * mass[None, :]
    rows = np.arange(len(users))
    for slot in range(_MAX_SLOTS):
        section = world.slot_section[users, slot].astype(np.int64)
        used = section >= 0
        weight[rows[used], section[used]] += (
            world.slot_weight[users[used], slot] * mass[section[used]]
        )
    cum = np.cumsum(weight, axis=1)
    draw = rng.random(len(users)) * cum[:, -1]
    return np.minimum((cum <= draw[:, None]).sum(axis=1), n_sections - 1).astype(np.int64)


def _favourites(world: World, users: IntArray, sections: IntArray) -> IntArray:
    """The user's favourite topic in the chosen section, or ``topics`` when not an interest."""
    fav = np.full(len(users), world.config.topics_per_section, dtype=np.int64)
    for slot in range(_MAX_SLOTS):
        match = world.slot_section[users, slot] == sections
        fav[match] = world.slot_fav[users[match], slot]
    return fav


def _repeats(sessions: IntArray, pages: IntArray) -> BoolArray:
    """Marks every view of a page already viewed earlier in the same session."""
    key = sessions * (int(pages.max(initial=0)) + 1) + pages
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    repeat = np.zeros(len(key), dtype=bool)
    repeat[order[1:][ordered[1:] == ordered[:-1]]] = True
    return repeat


def _hub_pages(world: World, users: IntArray, rng: np.random.Generator) -> IntArray:
    """Non-article pages: mostly the home page, else a section front (often a favourite) or an
    author page; none of them ends in ``-<digits>``, so none is mistaken for an article."""
    n, n_sections = len(users), len(world.config.sections)
    kind = rng.random(n)
    favourite = world.slot_section[users, 0].astype(np.int64)
    section = np.where(rng.random(n) < 0.7, favourite, rng.integers(0, n_sections, n))
    author = rng.integers(0, len(AUTHORS), n)
    home = world.home_page
    return np.where(
        kind < 0.55,
        home,
        np.where(kind < 0.85, home + 1 + section, home + 1 + n_sections + author),
    ).astype(np.int64)


def _human_sessions(
    world: World,
    attention: Attention,
    rng: np.random.Generator,
    lo_ms: int,
    hi_ms: int,
    n_sessions: int,
) -> Events:
    """Sessions starting in ``[lo_ms, hi_ms)``: views minutes apart, each followed by pings."""
    config = world.config
    hb_ms = config.heartbeat_seconds * 1000
    users = np.searchsorted(world.act_cum, rng.random(n_sessions) * world.act_cum[-1], "right")
    users = np.minimum(users, config.users - 1).astype(np.int64)
    starts = lo_ms + (rng.random(n_sessions) * (hi_ms - lo_ms)).astype(np.int64)
    lengths = rng.geometric(1.0 / config.mean_views_per_session, n_sessions)
    sess = np.repeat(np.arange(n_sessions), np.minimum(lengths, config.max_views_per_session))
    viewer = users[sess]
    hub = rng.random(len(sess)) < config.non_article_share
    if attention.empty:
        hub[:] = True
    page = np.empty(len(sess), dtype=np.int64)
    art = np.nonzero(~hub)[0]
    keep = np.ones(len(sess), dtype=bool)
    if len(art):
        sections = _choose_sections(world, viewer[art], attention.section_mass, rng)
        favs = _favourites(world, viewer[art], sections)
        page[art] = attention.sample(sections, favs, rng)
        for _ in range(4):  # re-draw articles already read in the session, then give up on them
            again = np.nonzero(_repeats(sess[art], page[art]))[0]
            if not len(again):
                break
            page[art[again]] = attention.sample(sections[again], favs[again], rng)
        keep[art[_repeats(sess[art], page[art])]] = False
    page[hub] = _hub_pages(world, viewer[hub], rng)
    sess, viewer, page, hub = sess[keep], viewer[keep], page[keep], hub[keep]
    n_views = len(sess)

    pings = _draw_pings(rng, hub, config)
    linger = rng.integers(1000, hb_ms, n_views) if hb_ms > 1000 else np.zeros(n_views, np.int64)
    browse = np.clip(rng.lognormal(math.log(12_000), 0.9, n_views), 1500, 600_000).astype(np.int64)
    step = pings * hb_ms + linger + browse
    first = np.ones(n_views, dtype=bool)
    first[1:] = sess[1:] != sess[:-1]
    head = np.maximum.accumulate(np.where(first, np.arange(n_views), 0))
    before = np.cumsum(step) - step
    view_ts = starts[sess] + before - before[head]

    ref_p = np.array([share for _, share in EXTERNAL_REFERRERS])
    ref = np.empty(n_views, dtype=np.int64)
    ref[first] = -1 - rng.choice(len(ref_p), size=int(first.sum()), p=ref_p / ref_p.sum())
    inner = np.nonzero(~first)[0]
    ref[inner] = page[inner - 1]

    of_ping = np.repeat(np.arange(n_views), pings)
    nth = np.arange(len(of_ping)) - np.repeat(np.cumsum(pings) - pings, pings) + 1
    return Events(
        ts=np.concatenate([view_ts, view_ts[of_ping] + nth * hb_ms]),
        user=np.concatenate([viewer, viewer[of_ping]]),
        page=np.concatenate([page, page[of_ping]]),
        ping=np.concatenate([np.zeros(n_views, bool), np.ones(len(of_ping), bool)]),
        ref=np.concatenate([ref, ref[of_ping]]),
    )


def _bot_bursts(
    world: World,
    attention: Attention,
    rng: np.random.Generator,
    lo_ms: int,
    hi_ms: int,
    expected_events: float,
) -> Events:
    """Crawlers: bursts of 10-80 distinct recent pages a second or two apart, no heartbeats."""
    config = world.config
    pool = np.concatenate([attention.recent, np.arange(world.home_page, len(world.paths))])
    parts = [Events.empty()]
    for _ in range(int(rng.poisson(expected_events / 45.0))):
        length = min(int(rng.integers(10, 81)), len(pool))
        start = lo_ms + int(rng.random() * (hi_ms - lo_ms))
        bot = config.users + int(rng.integers(0, config.bot_users))
        parts.append(
            Events(
                ts=start + np.cumsum(rng.integers(300, 3000, length)) - 300,
                user=np.full(length, bot, dtype=np.int64),
                page=rng.choice(pool, size=length, replace=False).astype(np.int64),
                ping=np.zeros(length, dtype=bool),
                ref=np.full(length, -1, dtype=np.int64),
            )
        )
    return Events.concat(parts)


def events_starting_in_hour(world: World, hour: int, rng: np.random.Generator) -> Events:
    """Events of the human sessions and bot bursts that start in UTC hour ``hour`` (epoch hours).

    Sessions may run past the hour (the caller carries those events over). Session counts follow
    the local hour of day and weekday; bots crawl around the clock.
    """
    t0 = hour * HOUR_MS
    lo, hi = max(t0, world.start_ms), min(t0 + HOUR_MS, world.end_ms)
    if hi <= lo:
        return Events.empty()
    share = (hi - lo) / HOUR_MS
    local = dt.datetime.fromtimestamp(lo / 1000, tz=world.zone)
    reading = READING_BY_HOUR[local.hour] / sum(READING_BY_HOUR)
    expected = world.sessions_per_day * reading * WEEKDAY_FACTOR[local.weekday()] * share
    attention = Attention(world, lo)
    parts = [Events.empty()]
    n_sessions = int(rng.poisson(expected))
    if n_sessions:
        parts.append(_human_sessions(world, attention, rng, lo, hi, n_sessions))
    bot_expected = world.bot_events_per_day / 24.0 * share
    if bot_expected > 0:
        parts.append(_bot_bursts(world, attention, rng, lo, hi, bot_expected))
    return Events.concat(parts)
