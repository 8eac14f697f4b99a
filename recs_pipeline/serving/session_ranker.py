"""The session ranker: one LightGBM model scoring a request's candidates from live state.

A request's candidates are what the live signals offer (live popularity at the first half-life,
the co-visits of the session's last clicks, the published personal and similar lists), minus
what the reader read. Each candidate gets :data:`LIVE_FEATURES`, computed by
:func:`request_features` from a :class:`RequestSignals` read from the live store by
:func:`read_signals`. Training (``train_session_ranker``) replays earlier days' clicks through the
same live store and calls the same two functions just before each session's last click, so
training and serving features cannot drift apart: there is one implementation.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

import lightgbm as lgb
import numpy as np
import pandas as pd

from recs_pipeline.core.site import ServingConfig
from recs_pipeline.serving.live import (
    LiveEvent,
    LiveSettings,
    LiveStore,
    MemoryLiveStore,
    ReaderView,
    live_settings,
)
from recs_pipeline.serving.scoring import (
    HOUR_MS,
    MINUTE_MS,
    Click,
    blend,
    combine_neighbours,
    current_session,
    scaled_to_max,
)
from recs_pipeline.serving.sessions import K, Scores, gap_sessions, session_queries

#: The columns of a request's feature matrix, in order (a model names the ones it was trained on).
LIVE_FEATURES: Final[tuple[str, ...]] = (
    "pop0",
    "pop0_share",
    "pop0_rank",
    "pop1",
    "pop1_share",
    "pop2",
    "pop2_share",
    "trend01",
    "trend12",
    "cov_last",
    "cov_last_share",
    "cov_last_rank",
    "cov_last_prob",
    "cov_prev",
    "cov_prev_share",
    "cov_session",
    "cov_last_total",
    "session_clicks",
    "reader_clicks",
    "minutes_since_click",
    "last_pop0_share",
    "hour_of_day",
    "personal_share",
    "personal_rank",
    "similar_share",
    "next_last",
    "next_last_share",
    "next_last_prob",
    "next_prev_share",
    "next_long_share",
    "next_long_prob",
)

_MISSING_RANK: Final = 1_000.0
_LN2: Final = math.log(2.0)
#: The site name of the private live store a training or evaluation walk feeds.
_SITE: Final = "walk"


@dataclass(frozen=True)
class RequestSignals:
    """What one request reads of live state (and the published lists), for its candidates."""

    clock: int
    read: frozenset[str]
    clicks: tuple[Click, ...]
    session: tuple[Click, ...]
    #: Live popularity at the first half-life, best first (minus the read set).
    popular: tuple[tuple[str, float], ...]
    #: Co-visits of the session's last distinct articles, newest anchor first.
    neighbours: tuple[tuple[tuple[str, float], ...], ...]
    #: Decayed counts at every half-life (the first included) of every candidate and anchor.
    counts: tuple[dict[str, float], ...]
    #: The largest count at each half-life among the request's articles.
    tops: tuple[float, ...]
    half_lives_ms: tuple[int, ...]
    personal: tuple[tuple[str, float], ...] = ()
    similar: tuple[tuple[str, float], ...] = ()
    #: Next-click transitions of the session's last two distinct articles, newest first.
    successors: tuple[tuple[tuple[str, float], ...], ...] = ()
    #: The last article's next-click transitions at the long half-life.
    successors_long: tuple[tuple[str, float], ...] = ()


def _anchors(session: Sequence[Click], depth: int) -> list[str]:
    """The session's last ``depth`` distinct articles, newest first."""
    out: list[str] = []
    for click in reversed(session):
        if click.article_id not in out:
            out.append(click.article_id)
            if len(out) >= depth:
                break
    return out


def read_signals(
    store: LiveStore,
    site: str,
    user_id: str,
    settings: LiveSettings,
    *,
    n: int = 100,
    depth: int = 3,
    session_gap_ms: int = 30 * MINUTE_MS,
    article_id: str | None = None,
    personal: Sequence[tuple[str, float]] = (),
    similar_of: Callable[[str], Sequence[tuple[str, float]]] | None = None,
    view: ReaderView | None = None,
) -> RequestSignals | None:
    """Read a request's signals from the store; None before the store has seen any event."""
    half_lives = settings.half_lives_ms
    if view is None:
        view = store.reader_view(site, user_id, half_lives[0], n)
    if view.clock is None:
        return None
    clock = view.clock
    session = current_session(view.clicks, clock, session_gap_ms)
    anchors = _anchors(session, depth)
    if article_id:
        anchors = [article_id, *[a for a in anchors if a != article_id]][:depth]
    neighbours = store.neighbours_of(site, anchors, n) if anchors else []
    successor_half_lives = settings.successor_half_lives_ms
    successors = (
        store.successors_of(site, anchors[:2], n, successor_half_lives[0]) if anchors else []
    )
    successors_long = (
        store.successors_of(site, anchors[:1], n, successor_half_lives[-1])[0]
        if anchors and len(successor_half_lives) > 1
        else []
    )
    similar = list(similar_of(anchors[0])) if similar_of is not None and anchors else []
    wanted: dict[str, None] = {}
    for article, _ in view.popular:
        wanted[article] = None
    for found in neighbours:
        for article, _ in found:
            wanted[article] = None
    for article, _ in (*personal, *similar):
        wanted[article] = None
    for article in anchors:
        wanted[article] = None
    names = list(wanted)
    counts = tuple(store.counts_at(site, half_lives, names))
    # The largest count among the request's articles (the live list's top is one of them).
    tops = tuple(max(found.values(), default=0.0) for found in counts)
    return RequestSignals(
        clock=clock,
        read=frozenset(view.read),
        clicks=tuple(view.clicks),
        session=tuple(session),
        popular=tuple(view.popular),
        neighbours=tuple(tuple(f) for f in neighbours),
        counts=counts,
        tops=tops,
        half_lives_ms=tuple(half_lives),
        personal=tuple(personal),
        similar=tuple(similar),
        successors=tuple(tuple(f) for f in successors),
        successors_long=tuple(successors_long),
    )


def _ranks(items: Iterable[tuple[str, float]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for article, _ in items:
        if article not in out:
            out[article] = len(out) + 1
    return out


def request_features(
    signals: RequestSignals, tz: ZoneInfo, excluded: Iterable[str] = ()
) -> tuple[list[str], np.ndarray]:
    """The request's candidates (unread, deterministic order) and their feature rows."""
    skip = set(signals.read) | set(excluded)
    candidates: dict[str, None] = {}
    for article, _ in signals.popular:
        candidates[article] = None
    for found in signals.neighbours:
        for article, _ in found:
            candidates[article] = None
    for article, _ in (*signals.personal, *signals.similar):
        candidates[article] = None
    names = [a for a in candidates if a not in skip]
    rows = np.full((len(names), len(LIVE_FEATURES)), np.nan, dtype=np.float32)
    if not names:
        return names, rows

    def level(index: int) -> int:
        return min(index, len(signals.half_lives_ms) - 1)

    counts = [signals.counts[level(i)] for i in range(3)]
    tops = [max(signals.tops[level(i)], 1e-12) for i in range(3)]
    half_lives = [signals.half_lives_ms[level(i)] for i in range(3)]
    pop_rank = _ranks(signals.popular)
    last = dict(signals.neighbours[0]) if signals.neighbours else {}
    prev = dict(signals.neighbours[1]) if len(signals.neighbours) > 1 else {}
    last_rank = _ranks(signals.neighbours[0]) if signals.neighbours else {}
    last_top = max(last.values(), default=0.0)
    last_total = sum(last.values())
    prev_top = max(prev.values(), default=0.0)
    next_last = dict(signals.successors[0]) if signals.successors else {}
    next_prev = dict(signals.successors[1]) if len(signals.successors) > 1 else {}
    next_top, next_total = max(next_last.values(), default=0.0), sum(next_last.values())
    next_prev_top = max(next_prev.values(), default=0.0)
    next_long = dict(signals.successors_long)
    long_top, long_total = max(next_long.values(), default=0.0), sum(next_long.values())
    session_total: dict[str, float] = {}
    for depth, found in enumerate(signals.neighbours):
        for article, value in scaled_to_max(dict(found)).items():
            session_total[article] = session_total.get(article, 0.0) + value * 0.5**depth
    personal = scaled_to_max(dict(signals.personal))
    personal_rank = _ranks(signals.personal)
    similar = scaled_to_max(dict(signals.similar))
    clock = signals.clock
    since = (clock - signals.clicks[-1].ts_ms) / MINUTE_MS if signals.clicks else float("nan")
    anchor = signals.session[-1].article_id if signals.session else None
    last_share = counts[0].get(anchor, 0.0) / tops[0] if anchor is not None else float("nan")
    local = dt.datetime.fromtimestamp(clock / 1000, tz)
    hour = local.hour + local.minute / 60.0

    def column(values: Mapping[str, float], default: float = 0.0) -> np.ndarray:
        return np.fromiter((values.get(a, default) for a in names), np.float64, len(names))

    def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        out = np.zeros(len(names))
        np.divide(top, bottom, out=out, where=bottom > 0)
        return out

    c = [column(counts[j]) for j in range(3)]
    rates = [c[j] * _LN2 / half_lives[j] * HOUR_MS for j in range(3)]
    cov = column(last)
    pv = column(prev)
    nx = column(next_last)
    nxp = column(next_prev)
    nxl = column(next_long)
    constant = np.ones(len(names))
    columns = (
        c[0],
        c[0] / tops[0],
        column(pop_rank, _MISSING_RANK),
        c[1],
        c[1] / tops[1],
        c[2],
        c[2] / tops[2],
        ratio(rates[0], rates[1]),
        ratio(rates[1], rates[2]),
        cov,
        cov / last_top if last_top > 0 else 0.0 * constant,
        column(last_rank, _MISSING_RANK),
        cov / last_total if last_total > 0 else 0.0 * constant,
        pv,
        pv / prev_top if prev_top > 0 else 0.0 * constant,
        column(session_total),
        last_total * constant,
        float(len(signals.session)) * constant,
        float(len(signals.clicks)) * constant,
        since * constant,
        last_share * constant,
        hour * constant,
        column(personal),
        column(personal_rank, _MISSING_RANK),
        column(similar),
        nx,
        nx / next_top if next_top > 0 else 0.0 * constant,
        nx / next_total if next_total > 0 else 0.0 * constant,
        nxp / next_prev_top if next_prev_top > 0 else 0.0 * constant,
        nxl / long_top if long_top > 0 else 0.0 * constant,
        nxl / long_total if long_total > 0 else 0.0 * constant,
    )
    for index, values in enumerate(columns):
        rows[:, index] = values
    return names, rows


# -- the model ------------------------------------------------------------------------------


@dataclass
class SessionRanker:
    """A LightGBM ranker over :data:`LIVE_FEATURES` and what it was trained and measured on."""

    booster: lgb.Booster
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.booster.feature_name())

    def score(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.empty(0)
        columns = [LIVE_FEATURES.index(name) for name in self.features]
        return np.asarray(self.booster.predict(rows[:, columns], num_threads=1), dtype=np.float64)

    def rank(
        self, signals: RequestSignals, tz: ZoneInfo, k: int, excluded: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """The top ``k`` candidates of a request, best first (ties by article id)."""
        names, rows = request_features(signals, tz, excluded)
        scores = self.score(rows)
        order = sorted(range(len(names)), key=lambda i: (-scores[i], names[i]))
        return [(names[i], float(scores[i])) for i in order[:k]]


#: The key of a user version's ``params`` that carries the session ranker (published with the
#: lists it was trained beside, so a snapshot never pairs a ranker with another publish's lists).
SESSION_RANKER_PARAM: Final = "session_ranker"


def session_ranker_document(model: SessionRanker) -> dict[str, Any]:
    """A JSON-able document: the LightGBM text model and its info."""
    return {"model": model.booster.model_to_string(), "info": model.info}


def session_ranker_from_document(document: Mapping[str, Any]) -> SessionRanker:
    booster = lgb.Booster(model_str=str(document["model"]))
    missing = [name for name in booster.feature_name() if name not in LIVE_FEATURES]
    if missing:
        raise ValueError(f"the session ranker needs features this code does not compute: {missing}")
    return SessionRanker(booster, dict(document.get("info", {})))


def save_session_ranker(model: SessionRanker) -> bytes:
    return json.dumps(session_ranker_document(model)).encode()


def load_session_ranker(blob: bytes) -> SessionRanker:
    return session_ranker_from_document(json.loads(blob))


@dataclass
class Request:
    """One request of the session protocol: who asks, when, and the article read next."""

    ts_ms: int
    user_id: str
    truth: str


def walk(
    clicks: pd.DataFrame,
    requests: Sequence[Request],
    settings: LiveSettings,
    visit: Callable[[Request, RequestSignals], None],
    *,
    n: int = 100,
    depth: int = 3,
    session_gap_ms: int = 30 * MINUTE_MS,
) -> int:
    """Feed ``clicks`` (time order) to a fresh in-process live store; before each request, every
    click older than it has been applied and ``visit`` gets the request's signals, read exactly
    as the API reads them. Returns the clicks applied."""
    store = MemoryLiveStore({_SITE: settings})
    users = clicks["user_id"].to_numpy()
    articles = clicks["article_id"].to_numpy()
    stamps = clicks["ts_ms"].to_numpy()
    sessions = (
        clicks["session_id"].to_numpy()
        if "session_id" in clicks.columns
        else np.full(len(clicks), None, dtype=object)
    )
    position = 0
    for request in sorted(requests, key=lambda r: (r.ts_ms, r.user_id)):
        end = int(np.searchsorted(stamps, request.ts_ms, side="left"))
        if end > position:
            store.apply(
                _SITE,
                [
                    LiveEvent(
                        str(users[i]),
                        str(articles[i]),
                        int(stamps[i]),
                        None if sessions[i] is None else str(sessions[i]),
                    )
                    for i in range(position, end)
                ],
            )
            position = end
        signals = read_signals(
            store, _SITE, request.user_id, settings, n=n, depth=depth, session_gap_ms=session_gap_ms
        )
        if signals is not None:
            visit(request, signals)
    return position


@dataclass
class TrainingSet:
    """Feature rows of many requests, their labels (1 = the article read next) and group sizes."""

    rows: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    asked: int = 0
    #: Requests whose truth was not among the candidates (they teach nothing and are left out).
    missed: int = 0

    def add(self, names: Sequence[str], rows: np.ndarray, truth: str) -> None:
        self.asked += 1
        labels = np.fromiter((name == truth for name in names), dtype=np.float32, count=len(names))
        if not labels.any():
            self.missed += 1
            return
        self.rows.append(rows)
        self.labels.append(labels)
        self.groups.append(len(names))


def fit_session_ranker(
    data: TrainingSet,
    *,
    n_estimators: int = 200,
    learning_rate: float = 0.05,
    num_leaves: int = 31,
    min_child_samples: int = 50,
    seed: int = 7,
) -> SessionRanker:
    """LambdaRank over the requests (NDCG@20), deterministic for the same data and seed."""
    if not data.groups:
        raise ValueError("no request had its next article among the candidates: nothing to learn")
    x = np.vstack(data.rows)
    y = np.concatenate(data.labels)
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [20],
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_child_samples": min_child_samples,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
    }
    dataset = lgb.Dataset(x, y, group=data.groups, feature_name=list(LIVE_FEATURES))
    booster = lgb.train(params, dataset, num_boost_round=n_estimators)
    info = {
        "requests": data.asked,
        "requests_with_truth": len(data.groups),
        "rows": len(y),
        "n_estimators": n_estimators,
        "recall_of_candidates": len(data.groups) / max(data.asked, 1),
    }
    return SessionRanker(booster, info)


__all__ = [
    "LIVE_FEATURES",
    "SESSION_RANKER_PARAM",
    "Request",
    "RequestSignals",
    "SessionRanker",
    "TrainingSet",
    "blend_list",
    "fit_session_ranker",
    "load_session_ranker",
    "read_signals",
    "request_features",
    "save_session_ranker",
    "session_ranker_as_of",
    "session_ranker_document",
    "session_ranker_from_document",
    "train_session_ranker",
    "walk",
]


def blend_list(signals: RequestSignals, k: int, session_depth: int = 1) -> list[str]:
    """What the API serves without a session ranker (its default blend), for comparison."""
    found = signals.neighbours[:session_depth]
    covisit = combine_neighbours([(0.5**depth, f) for depth, f in enumerate(found)])
    popular = {a: v for a, v in signals.popular if a not in signals.read}
    return [s.article_id for s in blend(popular, covisit, [], excluded=signals.read)][:k]


def train_session_ranker(
    clicks: pd.DataFrame,
    training: Sequence[Request],
    validation: Sequence[Request],
    settings: LiveSettings,
    tz: ZoneInfo,
    *,
    trees: int = 200,
    k: int = K,
    session_depth: int = 1,
    session_gap_ms: int = 30 * MINUTE_MS,
    progress: Callable[[str], None] | None = None,
) -> SessionRanker:
    """Train on ``training`` requests and compare with the blend on ``validation`` (held out,
    later), in one walk over ``clicks``. ``info`` records both scores and ``beats_blend``."""
    data = TrainingSet()
    held_out: list[tuple[list[str], np.ndarray, str]] = []
    blend_scores = Scores()
    validation_keys = {(r.ts_ms, r.user_id) for r in validation}
    started = time.perf_counter()
    seen = 0

    def visit(request: Request, signals: RequestSignals) -> None:
        nonlocal seen
        names, rows = request_features(signals, tz)
        if (request.ts_ms, request.user_id) in validation_keys:
            held_out.append((names, rows, request.truth))
            blend_scores.add(blend_list(signals, k, session_depth), request.truth)
        else:
            data.add(names, rows, request.truth)
        seen += 1
        if progress is not None and seen % 5_000 == 0:
            progress(
                f"session ranker: {seen:,} requests read ({time.perf_counter() - started:.0f}s)"
            )

    walk(clicks, [*training, *validation], settings, visit, session_gap_ms=session_gap_ms)
    model = fit_session_ranker(data, n_estimators=trees)
    ranker_scores = Scores()
    for names, rows, truth in held_out:
        scores = model.score(rows)
        order = sorted(range(len(names)), key=lambda i: (-scores[i], names[i]))
        ranker_scores.add([names[i] for i in order[:k]], truth)
    ranker_means, blend_means = ranker_scores.means(), blend_scores.means()
    metric = f"NDCG@{k}"
    model.info.update(
        {
            "validation_requests": ranker_scores.n,
            "validation": {"session_ranker": ranker_means, "blend": blend_means},
            "beats_blend": bool(
                ranker_scores.n and ranker_means.get(metric, 0.0) >= blend_means.get(metric, 0.0)
            ),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    return model


def _sample(requests: Sequence[Request], n: int, seed: int) -> list[Request]:
    if len(requests) <= n:
        return list(requests)
    picked = np.random.default_rng(seed).choice(len(requests), size=n, replace=False)
    return [requests[i] for i in sorted(picked)]


def session_ranker_as_of(
    views: pd.DataFrame,
    day: dt.date,
    as_of: dt.datetime,
    config: ServingConfig,
    tz: ZoneInfo,
    *,
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> SessionRanker | None:
    """The session ranker of ``day``: trained on the sessions of the ``session_ranker_days``
    days before it, compared with the blend on the day's own sessions up to ``as_of``.

    ``views`` are page views (``user_id, article_id, ts``) of those days and the day before them
    (the live state's warm-up); sessions are readers' clicks no more than
    ``session_gap_minutes`` apart. None when no training request has its truth among the
    candidates (too little traffic to learn from).
    """
    if config.session_ranker_days <= 0 or views.empty:
        return None
    stamps = pd.to_datetime(views["ts"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    clicks = pd.DataFrame(
        {
            "user_id": views["user_id"].astype(str).to_numpy(),
            "article_id": views["article_id"].astype(str).to_numpy(),
            "ts_ms": stamps,
        }
    )
    limit = int(as_of.timestamp() * 1000)
    clicks = clicks[clicks["ts_ms"] < limit]
    clicks = clicks.sort_values(["ts_ms", "user_id"], kind="stable", ignore_index=True)
    clicks["session_id"] = gap_sessions(clicks, int(config.session_gap_minutes * MINUTE_MS))

    def span(of: dt.date) -> tuple[int, int]:
        start = dt.datetime.combine(of, dt.time(), tz)
        return int(start.timestamp() * 1000), int((start + dt.timedelta(days=1)).timestamp() * 1000)

    def requests(of: dt.date) -> list[Request]:
        return [
            Request(q.ts_ms, q.user_id, q.truth)
            for q in session_queries(clicks, *span(of))
            if q.ts_ms < limit
        ]

    training = [
        r
        for back in range(config.session_ranker_days, 0, -1)
        for r in requests(day - dt.timedelta(days=back))
    ]
    validation = requests(day)
    training = _sample(training, config.session_ranker_requests, seed)
    validation = _sample(validation, config.session_ranker_validation_requests, seed + 1)
    if not training:
        return None
    settings = live_settings(config)
    try:
        model = train_session_ranker(
            clicks,
            training,
            validation,
            settings,
            tz,
            trees=config.session_ranker_trees,
            session_depth=config.session_depth,
            session_gap_ms=int(config.session_gap_minutes * MINUTE_MS),
            progress=progress,
        )
    except ValueError:
        return None
    model.info.update(
        {
            "day": day.isoformat(),
            "as_of": as_of.isoformat(),
            "training_requests": len(training),
            "clicks": len(clicks),
        }
    )
    return model
