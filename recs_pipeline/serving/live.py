"""Live state: what happened in the last minutes and hours, updated on every accepted event.

Per site: decayed article popularity at several half-lives (its trend is the ratio of two), each
reader's recent clicks (so the current session) and read articles, and item-to-item
co-visitation: the articles one reader clicked *after* an article within ``covisit_window``
(what readers went on to; the reverse direction too with ``covisit_backward_weight``), decayed
over hours.
The clock is event time: the newest accepted event; a late event counts (it adds what it would
have added, decayed) without moving the clock back.

Two implementations behind one small protocol: ``MemoryLiveStore`` (in process, the default)
and ``RedisLiveStore`` (``RECS_LIVE_URL=redis://…``, several workers share one state; a batch of
events is applied by one Lua script, so it is atomic and each event costs one round trip less
than a batch).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

import redis

from recs_pipeline.core.site import ServingConfig
from recs_pipeline.serving.scoring import (
    HOUR_MS,
    MINUTE_MS,
    REBASE_HALF_LIVES,
    Click,
    decay_factor,
    growth,
    needs_rebase,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveEvent:
    """One accepted click."""

    user_id: str
    article_id: str
    ts_ms: int
    session_id: str | None = None


@dataclass(frozen=True)
class LiveSettings:
    """How one site's live state is kept (from the ``serving`` section of its YAML)."""

    half_lives_ms: tuple[int, ...] = (3 * MINUTE_MS, 30 * MINUTE_MS, 2 * HOUR_MS)
    covisit_window_ms: int = 30 * MINUTE_MS
    covisit_half_life_ms: int = 2 * HOUR_MS
    #: Weight of a pair read the other way round (the earlier article as a neighbour of the
    #: later one); 0: co-visits point forward in time only.
    covisit_backward_weight: float = 0.0
    #: Half-lives of the next-click transitions (the first is the session ranker's short memory).
    successor_half_lives_ms: tuple[int, ...] = (2 * HOUR_MS, 24 * HOUR_MS)
    recent_clicks: int = 20
    read_limit: int = 500
    reader_ttl_ms: int = 48 * HOUR_MS
    prune_every: int = 50_000


def live_settings(config: ServingConfig) -> LiveSettings:
    """A site's live-state settings from the ``serving`` section of its YAML."""
    return LiveSettings(
        half_lives_ms=tuple(round(m * MINUTE_MS) for m in config.half_lives_minutes),
        covisit_window_ms=round(config.covisit_window_minutes * MINUTE_MS),
        covisit_half_life_ms=round(config.covisit_half_life_minutes * MINUTE_MS),
        covisit_backward_weight=config.covisit_backward_weight,
        successor_half_lives_ms=tuple(
            round(m * MINUTE_MS) for m in config.successor_half_lives_minutes
        ),
        recent_clicks=config.recent_clicks,
    )


@dataclass(frozen=True)
class ReaderView:
    """What one request needs of live state about its reader, read together."""

    clock: int | None
    read: set[str]
    clicks: list[Click]
    popular: list[tuple[str, float]]


class LiveStore(Protocol):
    """What the API asks of live state. Counts and weights are decayed at the site's clock."""

    def apply(self, site: str, events: Sequence[LiveEvent]) -> None: ...

    def clock(self, site: str) -> int | None: ...

    def popular(
        self, site: str, half_life_ms: int, n: int, skip: Iterable[str] = ()
    ) -> list[tuple[str, float]]: ...

    def counts(self, site: str, half_life_ms: int, articles: Sequence[str]) -> dict[str, float]: ...

    def counts_at(
        self, site: str, half_lives_ms: Sequence[int], articles: Sequence[str]
    ) -> list[dict[str, float]]:
        """``counts`` at several half-lives at once (one round trip with Redis)."""
        ...

    def clicks(self, site: str, user_id: str) -> list[Click]: ...

    def read(self, site: str, user_id: str) -> set[str]: ...

    def neighbours(self, site: str, article_id: str, n: int) -> list[tuple[str, float]]: ...

    def reader_view(self, site: str, user_id: str, half_life_ms: int, n: int) -> ReaderView:
        """Clock, read set, recent clicks and live popularity minus the read set, at once."""
        ...

    def neighbours_of(
        self, site: str, article_ids: Sequence[str], n: int
    ) -> list[list[tuple[str, float]]]:
        """``neighbours`` of several articles at once."""
        ...

    def successors_of(
        self, site: str, article_ids: Sequence[str], n: int, half_life_ms: int
    ) -> list[list[tuple[str, float]]]:
        """Of each article, the articles readers clicked *next* (their very next click within
        the co-visit window), decayed at one of ``successor_half_lives_ms``, best first."""
        ...

    def events(self, site: str) -> int: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


# -- in process ---------------------------------------------------------------------------------


class DecayedTable:
    """Decayed sums per key (see ``scoring``): add is one addition, order needs no decay.

    The keys in order are cached until the next change (a common decay factor never changes
    an order), so a burst of requests between two event batches sorts once.
    """

    __slots__ = ("_order", "half_life_ms", "ref_ms", "values")

    def __init__(self, half_life_ms: float) -> None:
        self.half_life_ms = half_life_ms
        self.ref_ms: int | None = None
        self.values: dict[str, float] = {}
        self._order: list[str] | None = None

    def add(self, key: str, ts_ms: int, amount: float = 1.0) -> None:
        if self.ref_ms is None:
            self.ref_ms = ts_ms
        elif needs_rebase(self.ref_ms, ts_ms, self.half_life_ms):
            self.rebase(ts_ms)
        self.values[key] = self.values.get(key, 0.0) + amount * growth(
            ts_ms, self.ref_ms, self.half_life_ms
        )
        self._order = None

    def rebase(self, to_ms: int) -> None:
        if self.ref_ms is None:
            self.ref_ms = to_ms
            return
        factor = decay_factor(self.ref_ms, to_ms, self.half_life_ms)
        self.values = {k: v * factor for k, v in self.values.items()}
        self.ref_ms = to_ms

    def factor(self, now_ms: int) -> float:
        return 0.0 if self.ref_ms is None else decay_factor(self.ref_ms, now_ms, self.half_life_ms)

    def top(self, n: int, now_ms: int, skip: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The ``n`` largest decayed values at ``now_ms`` (ties by key), minus ``skip``."""
        if n <= 0 or not self.values:
            return []
        if self._order is None:
            values = self.values
            self._order = sorted(values, key=lambda k: (-values[k], k))
        skipped = skip if isinstance(skip, set | frozenset) else set(skip)
        factor = self.factor(now_ms)
        out = []
        for key in self._order:
            if key in skipped:
                continue
            out.append((key, self.values[key] * factor))
            if len(out) >= n:
                break
        return out

    def prune(self, now_ms: int, floor: float) -> None:
        factor = self.factor(now_ms)
        self.values = {k: v for k, v in self.values.items() if v * factor >= floor}
        self._order = None


@dataclass
class _Reader:
    clicks: list[Click] = field(default_factory=list)
    read: dict[str, None] = field(default_factory=dict)


def _is_repeat(clicks: Sequence[Click], position: int, click: Click) -> bool:
    """Whether ``click`` repeats the click just before it (same article, same session)."""
    if position == 0:
        return False
    before = clicks[position - 1]
    return before.article_id == click.article_id and before.session_id == click.session_id


def _table(tables: dict[str, DecayedTable], article_id: str, half_life_ms: int) -> DecayedTable:
    table = tables.get(article_id)
    if table is None:
        table = tables[article_id] = DecayedTable(half_life_ms)
    return table


@dataclass
class _SiteState:
    settings: LiveSettings
    clock: int | None = None
    events: int = 0
    popularity: dict[int, DecayedTable] = field(default_factory=dict)
    covisit: dict[str, DecayedTable] = field(default_factory=dict)
    #: Next-click transitions per half-life: for each article, the articles read right after it.
    successors: dict[int, dict[str, DecayedTable]] = field(default_factory=dict)
    readers: dict[str, _Reader] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.popularity = {hl: DecayedTable(hl) for hl in self.settings.half_lives_ms}
        self.successors = {hl: {} for hl in self.settings.successor_half_lives_ms}

    def apply(self, event: LiveEvent) -> None:
        s = self.settings
        t = event.ts_ms
        self.clock = t if self.clock is None else max(self.clock, t)
        self.events += 1
        for table in self.popularity.values():
            table.add(event.article_id, t)
        reader = self.readers.setdefault(event.user_id, _Reader())
        click = Click(event.article_id, t, event.session_id)
        position = bisect.bisect_right([c.ts_ms for c in reader.clicks], t)
        if not _is_repeat(reader.clicks, position, click):
            if position > 0:
                before = reader.clicks[position - 1]
                if before.article_id != click.article_id and t - before.ts_ms <= (
                    s.covisit_window_ms
                ):
                    for half_life, tables in self.successors.items():
                        _table(tables, before.article_id, half_life).add(click.article_id, t)
            for other in reader.clicks:
                if other.article_id != click.article_id and abs(t - other.ts_ms) <= (
                    s.covisit_window_ms
                ):
                    # A late click may precede some of the reader's clicks already seen.
                    first, then = (other, click) if other.ts_ms <= t else (click, other)
                    _table(self.covisit, first.article_id, s.covisit_half_life_ms).add(
                        then.article_id, t
                    )
                    if s.covisit_backward_weight > 0:
                        _table(self.covisit, then.article_id, s.covisit_half_life_ms).add(
                            first.article_id, t, s.covisit_backward_weight
                        )
            reader.clicks.insert(position, click)
            if len(reader.clicks) > s.recent_clicks:
                del reader.clicks[: len(reader.clicks) - s.recent_clicks]
        reader.read[event.article_id] = None
        if len(reader.read) > s.read_limit:
            del reader.read[next(iter(reader.read))]
        if self.events % s.prune_every == 0:
            self.prune()

    def prune(self) -> None:
        """Forget readers idle for ``reader_ttl`` and weights decayed to nearly nothing."""
        if self.clock is None:
            return
        now = self.clock
        horizon = now - self.settings.reader_ttl_ms
        self.readers = {
            u: r for u, r in self.readers.items() if r.clicks and r.clicks[-1].ts_ms >= horizon
        }
        for table in self.popularity.values():
            table.prune(now, 1e-3)
        for tables in (self.covisit, *self.successors.values()):
            for article in list(tables):
                table = tables[article]
                table.prune(now, 1e-2)
                if not table.values:
                    del tables[article]


class MemoryLiveStore:
    """Live state in this process (one lock: events and requests never see half an update)."""

    def __init__(self, settings: Mapping[str, LiveSettings] | None = None) -> None:
        self._settings = dict(settings or {})
        self._sites: dict[str, _SiteState] = {}
        self._lock = threading.Lock()

    def _site(self, site: str) -> _SiteState:
        state = self._sites.get(site)
        if state is None:
            state = self._sites[site] = _SiteState(self._settings.get(site, LiveSettings()))
        return state

    def apply(self, site: str, events: Sequence[LiveEvent]) -> None:
        with self._lock:
            state = self._site(site)
            for event in events:
                state.apply(event)

    def clock(self, site: str) -> int | None:
        state = self._sites.get(site)
        return None if state is None else state.clock

    def popular(
        self, site: str, half_life_ms: int, n: int, skip: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        with self._lock:
            state = self._sites.get(site)
            if state is None or state.clock is None or half_life_ms not in state.popularity:
                return []
            return state.popularity[half_life_ms].top(n, state.clock, skip)

    def counts(self, site: str, half_life_ms: int, articles: Sequence[str]) -> dict[str, float]:
        with self._lock:
            state = self._sites.get(site)
            if state is None or state.clock is None or half_life_ms not in state.popularity:
                return {}
            table = state.popularity[half_life_ms]
            factor = table.factor(state.clock)
            return {a: table.values[a] * factor for a in articles if a in table.values}

    def counts_at(
        self, site: str, half_lives_ms: Sequence[int], articles: Sequence[str]
    ) -> list[dict[str, float]]:
        return [self.counts(site, half_life, articles) for half_life in half_lives_ms]

    def clicks(self, site: str, user_id: str) -> list[Click]:
        with self._lock:
            state = self._sites.get(site)
            reader = None if state is None else state.readers.get(user_id)
            return [] if reader is None else list(reader.clicks)

    def read(self, site: str, user_id: str) -> set[str]:
        with self._lock:
            state = self._sites.get(site)
            reader = None if state is None else state.readers.get(user_id)
            return set() if reader is None else set(reader.read)

    def neighbours(self, site: str, article_id: str, n: int) -> list[tuple[str, float]]:
        with self._lock:
            state = self._sites.get(site)
            if state is None or state.clock is None:
                return []
            table = state.covisit.get(article_id)
            return [] if table is None else table.top(n, state.clock)

    def successors_of(
        self, site: str, article_ids: Sequence[str], n: int, half_life_ms: int
    ) -> list[list[tuple[str, float]]]:
        with self._lock:
            state = self._sites.get(site)
            if state is None or state.clock is None:
                return [[] for _ in article_ids]
            tables, clock = state.successors.get(half_life_ms, {}), state.clock
            return [
                table.top(n, clock) if (table := tables.get(article)) is not None else []
                for article in article_ids
            ]

    def reader_view(self, site: str, user_id: str, half_life_ms: int, n: int) -> ReaderView:
        with self._lock:
            state = self._sites.get(site)
            if state is None:
                return ReaderView(None, set(), [], [])
            reader = state.readers.get(user_id)
            read = set() if reader is None else set(reader.read)
            table = state.popularity.get(half_life_ms)
            popular = (
                [] if table is None or state.clock is None else table.top(n, state.clock, read)
            )
            clicks = [] if reader is None else list(reader.clicks)
            return ReaderView(state.clock, read, clicks, popular)

    def neighbours_of(
        self, site: str, article_ids: Sequence[str], n: int
    ) -> list[list[tuple[str, float]]]:
        return [self.neighbours(site, a, n) for a in article_ids]

    def events(self, site: str) -> int:
        state = self._sites.get(site)
        return 0 if state is None else state.events

    def sizes(self, site: str) -> dict[str, int]:
        """Entries held (readers, co-visit pairs, popular articles): for memory accounting."""
        with self._lock:
            state = self._sites.get(site)
            if state is None:
                return {"readers": 0, "covisit_pairs": 0, "articles": 0}
            return {
                "readers": len(state.readers),
                "covisit_pairs": sum(len(t.values) for t in state.covisit.values()),
                "successor_pairs": sum(
                    len(t.values) for tables in state.successors.values() for t in tables.values()
                ),
                "articles": max((len(t.values) for t in state.popularity.values()), default=0),
            }

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


# -- Redis --------------------------------------------------------------------------------------

#: Applies a batch of events. ARGV: prefix, half-lives (JSON), covisit window, covisit half-life,
#: recent clicks, reader TTL (s), rebase threshold, n, covisit backward weight, successor
#: half-lives (JSON), then n x (user, article, ts, session).
#: A decayed zset ``K`` keeps its reference moment in ``K:ref`` (see ``scoring``).
_APPLY: Final = r"""
local P = ARGV[1]
local hls = cjson.decode(ARGV[2])
local window = tonumber(ARGV[3])
local cvhl = tonumber(ARGV[4])
local recent = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local rebase = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local back = tonumber(ARGV[9])
local nxhls = cjson.decode(ARGV[10])
local function add(key, member, ts, hl, amount)
  local refkey = key .. ':ref'
  local ref = tonumber(redis.call('GET', refkey))
  if not ref then
    ref = ts
    redis.call('SET', refkey, string.format('%d', ts))
  elseif (ts - ref) / hl > rebase then
    local f = string.format('%.17g', 2 ^ (-(ts - ref) / hl))
    redis.call('ZUNIONSTORE', key, 1, key, 'WEIGHTS', f)
    ref = ts
    redis.call('SET', refkey, string.format('%d', ts))
  end
  redis.call('ZINCRBY', key, string.format('%.17g', amount * 2 ^ ((ts - ref) / hl)), member)
end
local clock = tonumber(redis.call('GET', P .. 'clock') or '-1')
for i = 0, n - 1 do
  local u = ARGV[11 + i * 4]
  local a = ARGV[12 + i * 4]
  local ts = tonumber(ARGV[13 + i * 4])
  local s = ARGV[14 + i * 4]
  if ts > clock then clock = ts end
  for _, hl in ipairs(hls) do add(P .. 'pop:' .. hl, a, ts, hl, 1) end
  local ukey = P .. 'u:' .. u
  local prev = redis.call('LRANGE', ukey, 0, -1)
  local clicks = {}
  local before_ts, before_a, before_s = nil, nil, nil
  for _, item in ipairs(prev) do
    local pts, pa, ps = string.match(item, '^(%-?%d+)\t([^\t]*)\t(.*)$')
    pts = tonumber(pts)
    clicks[#clicks + 1] = {pts, pa}
    if pts <= ts and (before_ts == nil or pts >= before_ts) then
      before_ts, before_a, before_s = pts, pa, ps
    end
  end
  if not (before_a == a and before_s == s) then
    -- the reader's click just before this one gets it as its successor (next click)
    if before_a ~= nil and before_a ~= a and ts - before_ts <= window then
      for _, hl in ipairs(nxhls) do
        local nk = P .. 'nx:' .. hl .. ':' .. before_a
        add(nk, a, ts, hl, 1)
        redis.call('EXPIRE', nk, ttl)
        redis.call('EXPIRE', nk .. ':ref', ttl)
      end
    end
    for _, c in ipairs(clicks) do
      if c[2] ~= a and math.abs(ts - c[1]) <= window then
        -- forward in time: the earlier click's article gets the later one as a neighbour
        local first, later = c[2], a
        if c[1] > ts then first, later = a, c[2] end
        add(P .. 'cv:' .. first, later, ts, cvhl, 1)
        redis.call('EXPIRE', P .. 'cv:' .. first, ttl)
        redis.call('EXPIRE', P .. 'cv:' .. first .. ':ref', ttl)
        if back > 0 then
          add(P .. 'cv:' .. later, first, ts, cvhl, back)
          redis.call('EXPIRE', P .. 'cv:' .. later, ttl)
          redis.call('EXPIRE', P .. 'cv:' .. later .. ':ref', ttl)
        end
      end
    end
    redis.call('LPUSH', ukey, string.format('%d', ts) .. '\t' .. a .. '\t' .. s)
    if #clicks + 1 > recent then
      -- keep the newest by event time: drop the oldest entry (usually the tail)
      local oldest, oldest_item = nil, nil
      for _, item in ipairs(redis.call('LRANGE', ukey, 0, -1)) do
        local pts = tonumber(string.match(item, '^(%-?%d+)\t'))
        if oldest == nil or pts < oldest then oldest, oldest_item = pts, item end
      end
      redis.call('LREM', ukey, -1, oldest_item)
    end
  end
  redis.call('EXPIRE', ukey, ttl)
  redis.call('SADD', P .. 'r:' .. u, a)
  redis.call('EXPIRE', P .. 'r:' .. u, ttl)
end
redis.call('SET', P .. 'clock', string.format('%d', clock))
redis.call('INCRBY', P .. 'n', n)
return clock
"""


class RedisLiveStore:
    """Live state in Redis (``redis://host:port/db``), keys under ``prefix<site>:``.

    Reads are a few round trips per request; a batch of events is one script call. Keys of
    readers and co-visits expire (wall time) after the reader TTL, so an idle site's state
    drains away by itself. A Redis restart loses the state (the server here keeps nothing on
    disk); the API answers from the published lists meanwhile and fills up again as events
    arrive.
    """

    def __init__(
        self,
        url: str,
        settings: Mapping[str, LiveSettings] | None = None,
        prefix: str = "recs:live:",
        socket_timeout: float = 1.0,
    ) -> None:
        self._settings = dict(settings or {})
        self.prefix = prefix
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            decode_responses=True,
            health_check_interval=10,
        )
        self._apply = self._redis.register_script(_APPLY)

    def _p(self, site: str) -> str:
        return f"{self.prefix}{site}:"

    def _settings_of(self, site: str) -> LiveSettings:
        return self._settings.get(site, LiveSettings())

    def apply(self, site: str, events: Sequence[LiveEvent]) -> None:
        if not events:
            return
        s = self._settings_of(site)
        args: list[Any] = [
            self._p(site),
            "[" + ",".join(str(h) for h in s.half_lives_ms) + "]",
            s.covisit_window_ms,
            s.covisit_half_life_ms,
            s.recent_clicks,
            max(1, s.reader_ttl_ms // 1000),
            REBASE_HALF_LIVES,
            len(events),
            s.covisit_backward_weight,
            "[" + ",".join(str(h) for h in s.successor_half_lives_ms) + "]",
        ]
        for e in events:
            for text in (e.user_id, e.article_id, e.session_id or ""):
                if "\t" in text:
                    raise ValueError("ids may not contain tab characters")
            args.extend((e.user_id, e.article_id, e.ts_ms, e.session_id or ""))
        self._apply(keys=[], args=args)

    def clock(self, site: str) -> int | None:
        value = self._redis.get(self._p(site) + "clock")
        return None if value is None else int(str(value))

    def _decayed(
        self, site: str, key: str, half_life_ms: float, members: list[tuple[str, float]]
    ) -> list[tuple[str, float]]:
        clock = self.clock(site)
        ref = self._redis.get(key + ":ref")
        if clock is None or ref is None:
            return []
        factor = decay_factor(int(str(ref)), clock, half_life_ms)
        return [(m, float(v) * factor) for m, v in members]

    def popular(
        self, site: str, half_life_ms: int, n: int, skip: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        if n <= 0:
            return []
        skipped = set(skip)
        key = f"{self._p(site)}pop:{half_life_ms}"
        got = cast(
            list[tuple[str, float]],
            self._redis.zrevrange(key, 0, n + len(skipped) - 1, withscores=True),
        )
        members = [(str(m), float(v)) for m, v in got if m not in skipped]
        members.sort(key=lambda mv: (-mv[1], mv[0]))
        return self._decayed(site, key, half_life_ms, members[:n])

    def counts(self, site: str, half_life_ms: int, articles: Sequence[str]) -> dict[str, float]:
        if not articles:
            return {}
        key = f"{self._p(site)}pop:{half_life_ms}"
        scores = self._redis.zmscore(key, list(articles))
        found = [(a, float(v)) for a, v in zip(articles, scores, strict=True) if v is not None]
        return dict(self._decayed(site, key, half_life_ms, found))

    def counts_at(
        self, site: str, half_lives_ms: Sequence[int], articles: Sequence[str]
    ) -> list[dict[str, float]]:
        if not articles:
            return [{} for _ in half_lives_ms]
        p = self._p(site)
        names = list(articles)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(p + "clock")
        for half_life in half_lives_ms:
            pipe.get(f"{p}pop:{half_life}:ref")
            pipe.zmscore(f"{p}pop:{half_life}", names)
        answers = pipe.execute()
        clock = None if answers[0] is None else int(str(answers[0]))
        out: list[dict[str, float]] = []
        for i, half_life in enumerate(half_lives_ms):
            ref, scores = answers[1 + 2 * i], answers[2 + 2 * i]
            if clock is None or ref is None:
                out.append({})
                continue
            factor = decay_factor(int(str(ref)), clock, half_life)
            out.append(
                {a: float(v) * factor for a, v in zip(names, scores, strict=True) if v is not None}
            )
        return out

    def clicks(self, site: str, user_id: str) -> list[Click]:
        items = self._redis.lrange(f"{self._p(site)}u:{user_id}", 0, -1)
        out = []
        for item in items:
            ts, article, session = str(item).split("\t", 2)
            out.append(Click(article, int(ts), session or None))
        out.sort(key=lambda c: c.ts_ms)
        return out

    def read(self, site: str, user_id: str) -> set[str]:
        return {str(a) for a in self._redis.smembers(f"{self._p(site)}r:{user_id}")}

    def neighbours(self, site: str, article_id: str, n: int) -> list[tuple[str, float]]:
        if n <= 0:
            return []
        key = f"{self._p(site)}cv:{article_id}"
        got = cast(list[tuple[str, float]], self._redis.zrevrange(key, 0, n - 1, withscores=True))
        members = sorted(((str(m), float(v)) for m, v in got), key=lambda mv: (-mv[1], mv[0]))
        return self._decayed(site, key, self._settings_of(site).covisit_half_life_ms, members)

    def reader_view(self, site: str, user_id: str, half_life_ms: int, n: int) -> ReaderView:
        """One round trip (a second one only when reads crowd out the popular list)."""
        p = self._p(site)
        key = f"{p}pop:{half_life_ms}"
        extra = 50
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(p + "clock")
        pipe.smembers(f"{p}r:{user_id}")
        pipe.lrange(f"{p}u:{user_id}", 0, -1)
        pipe.get(key + ":ref")
        pipe.zrevrange(key, 0, n + extra - 1, withscores=True)
        clock_text, read_raw, items, ref, got = pipe.execute()
        read = {str(a) for a in read_raw}
        if len(read) > extra and len(got) == n + extra:
            got = self._redis.zrevrange(key, 0, n + len(read) - 1, withscores=True)
        clicks = []
        for item in items:
            ts, article, session = str(item).split("\t", 2)
            clicks.append(Click(article, int(ts), session or None))
        clicks.sort(key=lambda c: c.ts_ms)
        clock = None if clock_text is None else int(str(clock_text))
        popular: list[tuple[str, float]] = []
        if clock is not None and ref is not None:
            factor = decay_factor(int(str(ref)), clock, half_life_ms)
            members = sorted(
                ((str(m), float(v)) for m, v in got if m not in read),
                key=lambda mv: (-mv[1], mv[0]),
            )
            popular = [(m, v * factor) for m, v in members[:n]]
        return ReaderView(clock, read, clicks, popular)

    def neighbours_of(
        self, site: str, article_ids: Sequence[str], n: int
    ) -> list[list[tuple[str, float]]]:
        return self._tables_of(
            site, "cv", article_ids, n, self._settings_of(site).covisit_half_life_ms
        )

    def successors_of(
        self, site: str, article_ids: Sequence[str], n: int, half_life_ms: int
    ) -> list[list[tuple[str, float]]]:
        if half_life_ms not in self._settings_of(site).successor_half_lives_ms:
            return [[] for _ in article_ids]
        return self._tables_of(site, f"nx:{half_life_ms}", article_ids, n, half_life_ms)

    def _tables_of(
        self, site: str, kind: str, article_ids: Sequence[str], n: int, half_life: float
    ) -> list[list[tuple[str, float]]]:
        if not article_ids:
            return []
        p = self._p(site)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(p + "clock")
        for article in article_ids:
            pipe.get(f"{p}{kind}:{article}:ref")
            pipe.zrevrange(f"{p}{kind}:{article}", 0, n - 1, withscores=True)
        answers = pipe.execute()
        clock = None if answers[0] is None else int(str(answers[0]))
        out: list[list[tuple[str, float]]] = []
        for i in range(len(article_ids)):
            ref, got = answers[1 + 2 * i], answers[2 + 2 * i]
            if clock is None or ref is None:
                out.append([])
                continue
            factor = decay_factor(int(str(ref)), clock, half_life)
            members = sorted(((str(m), float(v)) for m, v in got), key=lambda mv: (-mv[1], mv[0]))
            out.append([(m, v * factor) for m, v in members])
        return out

    def events(self, site: str) -> int:
        value = self._redis.get(self._p(site) + "n")
        return 0 if value is None else int(str(value))

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()


def live_store(
    url: str | None, settings: Mapping[str, LiveSettings], prefix: str = "recs:live:"
) -> LiveStore:
    """``None``/empty: in process; ``redis://`` / ``rediss://`` / ``unix://``: Redis."""
    if not url:
        return MemoryLiveStore(settings)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisLiveStore(url, settings, prefix=prefix)
    raise ValueError(f"RECS_LIVE_URL must be redis://host:port/db, got {url.split('://')[0]}://")
