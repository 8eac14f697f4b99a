"""Candidate articles per reader as of a moment, from several generators.

A ranker can only reorder what it is offered, so candidates come from generators that each see a
different signal: time-decayed popularity at an hourly and a daily horizon (what is read right
now, what was read today), fresh articles (first seen in the last hours), item-to-item
co-visitation from the reader's last clicks (who read this also read, within an hour), similar
articles of the last reads (ALS cosine), and ALS top-N (long-term taste). Each candidate keeps every
generator's score and rank as features; an article the reader already clicked is never a
candidate.

Everything works on integer codes over one :class:`ClickHistory` (clicks sorted by time), so the
history before any moment is a slice and a two-hourly evaluation over a day does not re-parse
frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse

from recs_pipeline.core.als import AlsModel

__all__ = [
    "GENERATORS",
    "ArticleStats",
    "CandidateParams",
    "Candidates",
    "ClickHistory",
    "article_stats",
    "covisitation",
    "generate_candidates",
    "last_clicks",
]

#: Generators in the order their columns appear; each gives ``<name>_score`` and ``<name>_rank``.
GENERATORS = ("pop_now", "pop_hour", "pop_day", "fresh", "covisit", "next", "similar", "als")

HOUR = 3600.0
_GENERATOR = {name: index for index, name in enumerate(GENERATORS)}


@dataclass(frozen=True)
class CandidateParams:
    """How many candidates each generator offers and the windows it looks at."""

    #: Clicks older than this (before the moment) are ignored by popularity and co-visitation.
    lookback_hours: float = 7 * 24.0
    #: Minutes-scale popularity: what is being opened right now (the strongest 2-hour signal).
    pop_now_half_life_hours: float = 0.05
    pop_now_n: int = 30
    pop_hour_half_life_hours: float = 1.0
    pop_day_half_life_hours: float = 24.0
    pop_hour_n: int = 50
    pop_day_n: int = 20
    fresh_hours: float = 6.0
    fresh_n: int = 20
    fresh_min_clicks: int = 2
    #: Two clicks of one reader at most this far apart co-visit.
    covisit_window_hours: float = 1.0
    #: Neighbouring clicks paired per click (the window usually holds fewer).
    covisit_max_lag: int = 8
    #: The reader's last distinct clicks the item-to-item generators start from.
    recent_clicks: int = 5
    covisit_n: int = 30
    #: Articles read right after the reader's last click by other readers, recently.
    next_n: int = 20
    #: Half-life of those transitions: what readers go on to read changes within hours.
    next_half_life_hours: float = 6.0
    #: Half-life of the short popularity horizon (a feature, not a generator).
    pop_short_half_life_hours: float = 0.25
    similar_n: int = 20
    als_n: int = 20


@dataclass(frozen=True, eq=False)
class ClickHistory:
    """Clicks (user, article, time) sorted by time, with integer codes for users and articles."""

    users: pd.Index  # code -> user id (str)
    articles: pd.Index  # code -> article id (str)
    user_code: np.ndarray  # int64 per click
    article_code: np.ndarray  # int64 per click
    seconds: np.ndarray  # float64 epoch seconds per click, ascending

    @classmethod
    def from_events(cls, events: pd.DataFrame) -> ClickHistory:
        """From a frame with ``user_id, article_id, ts`` (only page views should be passed)."""
        frame = events.loc[
            events["user_id"].notna() & events["article_id"].notna(),
            ["user_id", "article_id", "ts"],
        ]
        seconds = _epoch_seconds(frame["ts"])
        order = np.argsort(seconds, kind="stable")
        user_code, users = pd.factorize(frame["user_id"].astype(str).to_numpy()[order], sort=True)
        article_code, articles = pd.factorize(
            frame["article_id"].astype(str).to_numpy()[order], sort=True
        )
        return cls(
            users=pd.Index(users, dtype=object),
            articles=pd.Index(articles, dtype=object),
            user_code=user_code.astype(np.int64),
            article_code=article_code.astype(np.int64),
            seconds=seconds[order],
        )

    def __len__(self) -> int:
        return len(self.seconds)

    def cut(self, moment: pd.Timestamp) -> int:
        """Number of clicks strictly before ``moment``."""
        return int(np.searchsorted(self.seconds, _moment_seconds(moment), side="left"))

    def span(self, start: pd.Timestamp | float, end: pd.Timestamp | float) -> slice:
        """Positions of the clicks in ``[start, end)``."""
        lo = np.searchsorted(self.seconds, _moment_seconds(start), side="left")
        hi = np.searchsorted(self.seconds, _moment_seconds(end), side="left")
        return slice(int(lo), int(hi))

    @cached_property
    def first_seen(self) -> np.ndarray:
        """First click time of each article (its age proxy when the source has no publish time)."""
        first = np.full(len(self.articles), np.inf)
        np.minimum.at(first, self.article_code, self.seconds)
        return first

    def user_codes(self, user_ids: pd.Index | np.ndarray | list[str]) -> np.ndarray:
        """Codes of some user ids; -1 for users without a click in the history."""
        return np.asarray(self.users.get_indexer(pd.Index(user_ids, dtype=object)), dtype=np.int64)

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique ``user * n_articles + article`` keys and their first click's position."""
        keys = self.user_code * len(self.articles) + self.article_code
        unique, first = np.unique(keys, return_index=True)
        return unique, first

    def seen_mask(self, keys: np.ndarray, end: int) -> np.ndarray:
        """Whether each ``user * n_articles + article`` key was clicked before position ``end``."""
        unique, first = self._pairs
        if not len(unique):
            return np.zeros(len(keys), dtype=bool)
        position = np.minimum(np.searchsorted(unique, keys), len(unique) - 1)
        return (unique[position] == keys) & (first[position] < end)


@dataclass(frozen=True)
class ArticleStats:
    """Per-article numbers as of a moment (arrays indexed by article code)."""

    moment: float
    pop_now: np.ndarray
    pop_hour: np.ndarray
    pop_day: np.ndarray
    pop_short: np.ndarray
    clicks_2m: np.ndarray
    clicks_5m: np.ndarray
    clicks_10m: np.ndarray
    clicks_15m: np.ndarray
    clicks_1h: np.ndarray
    clicks_6h: np.ndarray
    clicks_24h: np.ndarray
    clicks_window: np.ndarray
    age_hours: np.ndarray  # hours since first seen; inf when never seen before the moment


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True)
    return (stamps.astype("datetime64[ms, UTC]").astype("int64").to_numpy() / 1000.0).astype(
        np.float64
    )


def _moment_seconds(moment: pd.Timestamp | float) -> float:
    if isinstance(moment, int | float | np.floating):
        return float(moment)
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.value / 1e9


def article_stats(
    history: ClickHistory, moment: pd.Timestamp, params: CandidateParams
) -> ArticleStats:
    """Popularity at two decay horizons and click counts over 1 h, 6 h, 24 h and the lookback."""
    now = _moment_seconds(moment)
    n = len(history.articles)
    window = history.span(now - params.lookback_hours * HOUR, now)
    codes = history.article_code[window]
    ages = (now - history.seconds[window]) / HOUR

    def decayed(half_life: float) -> np.ndarray:
        return np.bincount(codes, weights=np.exp2(-ages / half_life), minlength=n)

    def recent(hours: float) -> np.ndarray:
        return np.bincount(codes[ages <= hours], minlength=n).astype(np.float64)

    first = history.first_seen
    age = np.where(first < now, (now - first) / HOUR, np.inf)
    return ArticleStats(
        moment=now,
        pop_now=decayed(params.pop_now_half_life_hours),
        pop_hour=decayed(params.pop_hour_half_life_hours),
        pop_day=decayed(params.pop_day_half_life_hours),
        pop_short=decayed(params.pop_short_half_life_hours),
        clicks_2m=recent(2 / 60),
        clicks_5m=recent(5 / 60),
        clicks_10m=recent(10 / 60),
        clicks_15m=recent(0.25),
        clicks_1h=recent(1.0),
        clicks_6h=recent(6.0),
        clicks_24h=recent(24.0),
        clicks_window=np.bincount(codes, minlength=n).astype(np.float64),
        age_hours=age,
    )


def last_clicks(
    history: ClickHistory, end: int, user_codes: np.ndarray, count: int
) -> scipy.sparse.csr_matrix:
    """Requested users x articles, 1 for each of a user's last ``count`` distinct clicks."""
    n_articles = len(history.articles)
    rows = pd.Index(user_codes).get_indexer(history.user_code[:end])
    hit = np.flatnonzero(rows >= 0)
    # Newest first, then the first occurrence of each (user, article) is its latest click.
    hit = hit[::-1]
    frame = pd.DataFrame({"row": rows[hit], "article": history.article_code[hit]})
    frame = frame.drop_duplicates(["row", "article"], keep="first")
    frame = frame.loc[frame.groupby("row").cumcount() < count]
    return scipy.sparse.csr_matrix(
        (np.ones(len(frame), dtype=np.float32), (frame["row"], frame["article"])),
        shape=(len(user_codes), n_articles),
    )


def covisitation(
    history: ClickHistory, start: int, end: int, params: CandidateParams
) -> scipy.sparse.csr_matrix:
    """Articles x articles counts of clicks by one reader within the co-visit window, both ways."""
    n = len(history.articles)
    users = history.user_code[start:end]
    order = np.lexsort((history.seconds[start:end], users))
    users = users[order]
    articles = history.article_code[start:end][order]
    seconds = history.seconds[start:end][order]
    window = params.covisit_window_hours * HOUR
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for lag in range(1, params.covisit_max_lag + 1):
        if lag >= len(users):
            break
        pair = (
            (users[lag:] == users[:-lag])
            & (seconds[lag:] - seconds[:-lag] <= window)
            & (articles[lag:] != articles[:-lag])
        )
        if not pair.any():
            break
        left.append(articles[:-lag][pair])
        right.append(articles[lag:][pair])
    if not left:
        return scipy.sparse.csr_matrix((n, n), dtype=np.float32)
    a = np.concatenate(left + right)
    b = np.concatenate(right + left)
    matrix = scipy.sparse.coo_matrix((np.ones(len(a), dtype=np.float32), (a, b)), shape=(n, n))
    return matrix.tocsr()


def transitions(
    history: ClickHistory, end: int, now: float, params: CandidateParams
) -> scipy.sparse.csr_matrix:
    """Articles x articles: how often readers went from one article straight to another.

    Consecutive clicks of one reader within the co-visit window, directed, each weighted by
    ``0.5 ** (age / next_half_life_hours)`` over the last four half-lives: the articles readers
    open next change as the day's stories move on.
    """
    n = len(history.articles)
    start = history.span(now - 4 * params.next_half_life_hours * HOUR, now).start
    users = history.user_code[start:end]
    order = np.lexsort((history.seconds[start:end], users))
    users = users[order]
    articles = history.article_code[start:end][order]
    seconds = history.seconds[start:end][order]
    if len(users) < 2:
        return scipy.sparse.csr_matrix((n, n), dtype=np.float32)
    pair = (
        (users[1:] == users[:-1])
        & (seconds[1:] - seconds[:-1] <= params.covisit_window_hours * HOUR)
        & (articles[1:] != articles[:-1])
    )
    weight = np.exp2(-(now - seconds[1:][pair]) / HOUR / params.next_half_life_hours)
    matrix = scipy.sparse.coo_matrix(
        (weight.astype(np.float32), (articles[:-1][pair], articles[1:][pair])), shape=(n, n)
    )
    return matrix.tocsr()


def _last_click(history: ClickHistory, end: int, user_codes: np.ndarray) -> scipy.sparse.csr_matrix:
    """Requested users x articles, 1 at each user's very last click before ``end``."""
    rows = pd.Index(user_codes).get_indexer(history.user_code[:end])
    hit = np.flatnonzero(rows >= 0)
    last = np.full(len(user_codes), -1, dtype=np.int64)
    last[rows[hit]] = hit  # later clicks overwrite earlier ones
    known = np.flatnonzero(last >= 0)
    return scipy.sparse.csr_matrix(
        (
            np.ones(len(known), dtype=np.float32),
            (known, history.article_code[last[known]]),
        ),
        shape=(len(user_codes), len(history.articles)),
    )


@dataclass
class Candidates:
    """One row per (reader, candidate article): codes plus every generator's score and rank.

    A generator that did not offer the article has score 0 and rank ``NaN``.
    """

    user_row: np.ndarray  # position in the requested users
    article_code: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    ranks: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_row)


def _top_per_row(matrix: scipy.sparse.csr_matrix, n: int) -> tuple[np.ndarray, ...]:
    """(row, column, value, rank from 1) of the best ``n`` positive entries of each row.

    A loop over rows with ``argpartition`` on each row's few entries: sorting all entries of a
    readers x articles product at once is far slower when rows are long.
    """
    csr = scipy.sparse.csr_matrix(matrix)
    csr.eliminate_zeros()
    indptr, indices, data = csr.indptr, csr.indices, csr.data
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    vals_out: list[np.ndarray] = []
    for row in np.flatnonzero(np.diff(indptr)):
        begin, end = indptr[row], indptr[row + 1]
        values = data[begin:end]
        cols = indices[begin:end]
        positive = values > 0
        values, cols = values[positive], cols[positive]
        if len(values) > n:
            part = np.argpartition(-values, n - 1)[:n]
            values, cols = values[part], cols[part]
        order = np.lexsort((cols, -values))
        rows_out.append(np.full(len(order), row, dtype=np.int64))
        cols_out.append(cols[order].astype(np.int64))
        vals_out.append(values[order].astype(np.float64))
    if not rows_out:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), np.empty(0), np.empty(0)
    rows = np.concatenate(rows_out)
    ranks = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") + 1
    return rows, np.concatenate(cols_out), np.concatenate(vals_out), ranks.astype(np.float64)


def _global_list(scores: np.ndarray, n: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Article codes of the best ``n`` positive scores (ties to the lower code)."""
    valid = scores > 0 if eligible is None else (scores > 0) & eligible
    codes = np.flatnonzero(valid)
    order = np.lexsort((codes, -scores[codes]))
    return codes[order][:n]


def generate_candidates(
    history: ClickHistory,
    moment: pd.Timestamp,
    user_codes: np.ndarray,
    params: CandidateParams,
    stats: ArticleStats | None = None,
    als: AlsModel | None = None,
    similar: scipy.sparse.csr_matrix | None = None,
    covisit: scipy.sparse.csr_matrix | None = None,
) -> tuple[Candidates, ArticleStats]:
    """Candidates for the requested users (history codes; -1 = no click yet) as of ``moment``.

    ``similar`` is an articles x articles similarity matrix over the history's article codes
    (from :func:`similar_matrix`); ``covisit`` may be passed when already built for this moment.
    Articles a user clicked before the moment are removed from every generator's list before
    ranking, so a generator's ``n`` counts unread articles.
    """
    now = _moment_seconds(moment)
    end = history.cut(moment)
    start = history.span(now - params.lookback_hours * HOUR, now).start
    n_articles = len(history.articles)
    n_users = len(user_codes)
    if stats is None:
        stats = article_stats(history, moment, params)

    parts_user: list[np.ndarray] = []
    parts_article: list[np.ndarray] = []
    parts_gen: list[np.ndarray] = []
    parts_score: list[np.ndarray] = []

    def add(gen: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        parts_user.append(rows)
        parts_article.append(cols)
        parts_gen.append(np.full(len(rows), gen, dtype=np.int64))
        parts_score.append(values)

    # Global lists: every reader is offered them (minus what they read).
    known = user_codes >= 0
    for generator, scores, n, eligible in (
        (_GENERATOR["pop_now"], stats.pop_now, params.pop_now_n, None),
        (_GENERATOR["pop_hour"], stats.pop_hour, params.pop_hour_n, None),
        (_GENERATOR["pop_day"], stats.pop_day, params.pop_day_n, None),
        (_GENERATOR["fresh"], -stats.age_hours, params.fresh_n, None),
    ):
        if generator == _GENERATOR["fresh"]:
            fresh = (stats.age_hours <= params.fresh_hours) & (
                stats.clicks_window >= params.fresh_min_clicks
            )
            # Newest first: score = hours left of the freshness window (> 0 for every eligible).
            scores = np.where(fresh, params.fresh_hours - stats.age_hours + 1e-6, 0.0)
        # Over-fetch so that n unread ones remain for most readers.
        codes = _global_list(scores, n * 2 + 20, eligible)
        rows = np.repeat(np.arange(n_users), len(codes))
        cols = np.tile(codes, n_users)
        add(generator, rows, cols, scores[cols])

    recent = None
    if (covisit is not None or similar is not None or params.covisit_n) and known.any():
        recent = last_clicks(history, end, user_codes, params.recent_clicks)
    if params.covisit_n and recent is not None:
        matrix = covisit if covisit is not None else covisitation(history, start, end, params)
        rows, cols, values, _ = _top_per_row(recent @ matrix, params.covisit_n * 3)
        add(_GENERATOR["covisit"], rows, cols, values)
    if params.next_n and known.any():
        moves = transitions(history, end, now, params)
        rows, cols, values, _ = _top_per_row(
            _last_click(history, end, user_codes) @ moves, params.next_n * 3
        )
        add(_GENERATOR["next"], rows, cols, values)
    if params.similar_n and similar is not None and recent is not None:
        rows, cols, values, _ = _top_per_row(recent @ similar, params.similar_n * 3)
        add(_GENERATOR["similar"], rows, cols, values)
    if params.als_n and als is not None and known.any():
        rows, cols, values = _als_candidates(history, als, user_codes, params.als_n * 2)
        add(_GENERATOR["als"], rows, cols, values)

    user_row: np.ndarray = np.concatenate(parts_user) if parts_user else np.empty(0, np.int64)
    article: np.ndarray = np.concatenate(parts_article) if parts_article else np.empty(0, np.int64)
    gen: np.ndarray = np.concatenate(parts_gen) if parts_gen else np.empty(0, np.int64)
    score: np.ndarray = np.concatenate(parts_score) if parts_score else np.empty(0, np.float64)

    # Drop what the reader already clicked.
    user_of_row = user_codes[user_row]
    keys = user_of_row * n_articles + article
    unread = (user_of_row < 0) | ~history.seen_mask(keys, end)
    user_row, article, gen, score = user_row[unread], article[unread], gen[unread], score[unread]

    # Rank within (reader, generator), keep each generator's n best unread.
    limits = np.array([getattr(params, f"{name}_n") for name in GENERATORS])
    order = np.lexsort((article, -score, gen, user_row))
    user_row, article, gen, score = user_row[order], article[order], gen[order], score[order]
    group = user_row * len(GENERATORS) + gen
    rank = np.arange(len(group)) - np.searchsorted(group, group, side="left") + 1
    keep = rank <= limits[gen]
    user_row, article, gen, score, rank = (
        user_row[keep],
        article[keep],
        gen[keep],
        score[keep],
        rank[keep],
    )

    # One row per (reader, article), a score and rank column per generator.
    pair = user_row * n_articles + article
    unique, inverse = np.unique(pair, return_inverse=True)
    candidates = Candidates(
        user_row=(unique // n_articles).astype(np.int64),
        article_code=(unique % n_articles).astype(np.int64),
    )
    for index, name in enumerate(GENERATORS):
        mine = gen == index
        values = np.zeros(len(unique))
        ranks = np.full(len(unique), np.nan)
        values[inverse[mine]] = score[mine]
        ranks[inverse[mine]] = rank[mine]
        candidates.scores[name] = values
        candidates.ranks[name] = ranks
    return candidates, stats


def _isin_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    position = np.searchsorted(sorted_unique, values)
    position = np.minimum(position, len(sorted_unique) - 1)
    return sorted_unique[position] == values


_ALS_BLOCK_CELLS = 8 * 1024 * 1024


def _als_candidates(
    history: ClickHistory, als: AlsModel, user_codes: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ALS top-``n`` per requested user the model knows, as (row, article code, score)."""
    model_users = pd.Index(np.asarray(als.user_ids, dtype=object).astype(str))
    user_ids = np.where(user_codes >= 0, history.users.to_numpy()[np.maximum(user_codes, 0)], "")
    model_rows = model_users.get_indexer(pd.Index(user_ids, dtype=object))
    model_rows[user_codes < 0] = -1
    item_codes = history.articles.get_indexer(
        pd.Index(np.asarray(als.article_ids, dtype=object).astype(str))
    )
    usable = item_codes >= 0  # articles the history knows (others cannot be clicked anyway)
    items = np.asarray(als.item_factors, dtype=np.float32)[usable]
    item_codes = item_codes[usable]
    requested = np.flatnonzero(model_rows >= 0)
    if not len(requested) or not len(item_codes):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), np.empty(0)
    k = min(n, len(item_codes))
    block = max(1, _ALS_BLOCK_CELLS // len(item_codes))
    rows_out, cols_out, vals_out = [], [], []
    for begin in range(0, len(requested), block):
        chunk = requested[begin : begin + block]
        scores = als.user_factors[model_rows[chunk]] @ items.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        rows_out.append(np.repeat(chunk, k))
        cols_out.append(item_codes[top.ravel()])
        vals_out.append(np.take_along_axis(scores, top, axis=1).ravel().astype(np.float64))
    return np.concatenate(rows_out), np.concatenate(cols_out), np.concatenate(vals_out)


def similar_matrix(history: ClickHistory, similar: pd.DataFrame) -> scipy.sparse.csr_matrix:
    """Articles x articles matrix of a ``similar_articles`` frame over the history's codes."""
    n = len(history.articles)
    if similar.empty:
        return scipy.sparse.csr_matrix((n, n), dtype=np.float32)
    source = history.articles.get_indexer(pd.Index(similar["article_id"].astype(str)))
    target = history.articles.get_indexer(pd.Index(similar["similar_article_id"].astype(str)))
    keep = (source >= 0) & (target >= 0)
    values = similar["score"].to_numpy(dtype=np.float32)[keep]
    return scipy.sparse.csr_matrix((values, (source[keep], target[keep])), shape=(n, n))
