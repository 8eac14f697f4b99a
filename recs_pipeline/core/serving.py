"""What a reader is served as of a moment: one chain for every reader, the same everywhere.

One function, :func:`recommendations_as_of`, builds the lists of the ``user_recommendations``
asset, of ``recs recommend`` and of the evaluation's ``served`` method, so what the evaluation
scores and the gate reads is exactly what readers get.

The chain:

- **ranker** for every reader when the day has one. Its features are mostly not personal
  (minute-scale popularity, trend, freshness), so it ranks readers without recent clicks too:
  readers in the click history get their own candidates and features; every reader without a
  click in it (older history or none) would get the same candidates and features, so one shared
  list is ranked once and each reader's read articles are taken out of it;
- **popular**: fresh popularity (clicks decayed with a minutes-scale half-life at the moment),
  then the day's popular list, for everyone when there is no ranker and to fill short lists.

Nothing a reader has read is listed: the read set (every article the reader opened over the
site's long read horizon) and the clicks before the moment are both excluded.

Readers fall in three groups, reported and gated separately: ``active`` (a click within
``active_hours``), ``older`` (in the click history, not active) and ``no_history`` (no click in
the click history: known from older reads, or new).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recs_pipeline.core.als import AlsModel
from recs_pipeline.core.baselines import pop_decay_half_life
from recs_pipeline.core.candidates import HOUR, ClickHistory, _isin_sorted
from recs_pipeline.core.ranker import RankerModel, rank_lists, ranking_context
from recs_pipeline.core.timeframe import day_bounds, day_of, window_days

__all__ = [
    "COLUMNS",
    "GROUPS",
    "ServedLists",
    "ServingInputs",
    "ServingPolicy",
    "article_registry",
    "choose_policy",
    "reader_groups",
    "recommendations_as_of",
]

COLUMNS = ("user_id", "rank", "article_id", "score", "source")
#: Reader groups, by what the chain knows of them at the moment.
GROUPS = ("active", "older", "no_history")

#: ``source`` of a row by its kind: the ranker, the fill, ALS.
_SOURCE_OF_KIND = ("ranker", "popular", "als")
#: What a reader group may be served from (``ServingInputs.policy``).
SOURCES = ("ranker", "als", "popular")

#: Shared-list depth beyond n: room for the articles a reader without recent clicks has read.
_SHARED_EXTRA = 60
#: Per-reader depth beyond n for readers in the click history (their clicks are excluded by the
#: ranker already; this is for older reads).
_PERSONAL_EXTRA = 30
_BLOCK_READERS = 20_000


@dataclass
class ServingInputs:
    """Everything a list is computed from, all cut at ``moment``."""

    moment: pd.Timestamp
    tz: ZoneInfo
    #: Page views before the moment (``user_id, article_id, ts``): the ranker's history.
    clicks: pd.DataFrame
    #: The read set: (user_id, article_id) pairs opened over the read horizon; never listed.
    seen: pd.DataFrame
    #: The day's popular list (``rank, article_id, score``): the last fill.
    popular: pd.DataFrame
    als: AlsModel | None = None
    similar: pd.DataFrame | None = None
    ranker: RankerModel | None = None
    #: Article -> section, for the category-affinity feature (None: pages have no sections).
    categories: pd.Series | None = None
    #: Half-life of the fresh popularity the chain falls back to and fills with.
    fresh_half_life_hours: float = 0.1
    #: Reader group -> source (``ranker``, ``als`` or ``popular``), from the evaluation
    #: (:func:`choose_policy`); a group not named is ranked (fresh popularity without a ranker).
    policy: dict[str, str] | None = None
    #: Who gets a list when no readers are asked for (the engagement window's readers); None:
    #: every reader of ``seen``.
    readers: pd.Index | None = None


def reader_groups(
    history: ClickHistory, codes: np.ndarray, moment: pd.Timestamp, active_hours: float
) -> np.ndarray:
    """The group of each reader (history codes, -1 = no click in it) as of ``moment``."""
    end = history.cut(moment)
    last = np.full(len(history.users), -np.inf)
    np.maximum.at(last, history.user_code[:end], history.seconds[:end])
    known = codes >= 0
    seen_before = np.zeros(len(codes), dtype=bool)
    last_click = np.full(len(codes), -np.inf)
    last_click[known] = last[codes[known]]
    seen_before[known] = np.isfinite(last_click[known])
    now = pd.Timestamp(moment).value / 1e9
    active = seen_before & (last_click >= now - active_hours * HOUR)
    return np.where(active, "active", np.where(seen_before, "older", "no_history"))


def _fresh_popular(
    history: ClickHistory, moment: pd.Timestamp, half_life_hours: float, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """(article ids, scores scaled to best = 1) of clicks decayed to ``moment``."""
    end = history.cut(moment)
    now = pd.Timestamp(moment).value / 1e9
    ages = (now - history.seconds[:end]) / HOUR
    scores = np.bincount(
        history.article_code[:end],
        weights=np.exp2(-ages / half_life_hours),
        minlength=len(history.articles),
    )
    codes = np.flatnonzero(scores > 0)
    codes = codes[np.lexsort((codes, -scores[codes]))][:depth]
    best = scores[codes[0]] if len(codes) else 1.0
    return history.articles.to_numpy()[codes].astype(str), scores[codes] / best


def recommendations_as_of(
    inputs: ServingInputs,
    n: int,
    active_hours: float,
    users: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``user_id, rank, article_id, score, source, group`` for the requested readers.

    ``users`` defaults to ``inputs.readers`` (else every reader of the read set); other
    requested readers are served too (a reader nobody has seen gets the shared list).
    ``source`` is ``ranker``, ``als`` or ``popular``; ``group`` is the reader's group
    (:data:`GROUPS`). At most ``n`` per reader, and exactly ``n`` whenever the candidates and
    the popular lists hold that many unread articles.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    seen = inputs.seen[["user_id", "article_id"]].astype(str).drop_duplicates()
    if users is not None:
        wanted = np.asarray(users, dtype=object)
    elif inputs.readers is not None:
        wanted = inputs.readers.to_numpy()
    else:
        wanted = seen["user_id"].to_numpy()
    requested = pd.Index(pd.unique(wanted.astype(str)), dtype=object)
    clicks = inputs.clicks
    if len(clicks):
        clicks = clicks.loc[clicks["ts"] < inputs.moment]
    history = ClickHistory.from_events(clicks)
    codes = history.user_codes(requested)
    groups = reader_groups(history, codes, inputs.moment, active_hours)
    if not len(requested):
        return _frame(requested, groups, *(np.empty(0, dtype=np.int64),) * 3, np.empty(0), None)

    fresh_ids, fresh_scores = _fresh_popular(
        history, inputs.moment, inputs.fresh_half_life_hours, n + _SHARED_EXTRA
    )
    ranked = inputs.popular.sort_values("rank", kind="mergesort")
    pop_ids = ranked["article_id"].astype(str).to_numpy()
    pop_scores = ranked["score"].to_numpy(dtype=np.float64)
    vocab = pd.Index(
        pd.unique(
            np.concatenate(
                [
                    history.articles.to_numpy().astype(str),
                    fresh_ids,
                    pop_ids,
                    seen["article_id"].to_numpy().astype(str),
                    np.asarray(
                        inputs.als.article_ids if inputs.als is not None else [], dtype=object
                    ).astype(str),
                ]
            )
        ),
        dtype=object,
    )
    width = np.int64(max(len(vocab), 1))
    hist_to_vocab = vocab.get_indexer(history.articles).astype(np.int64)

    # The fill: fresh popularity, then the day's popular list (first occurrence wins).
    fill_codes = vocab.get_indexer(np.concatenate([fresh_ids, pop_ids])).astype(np.int64)
    fill_scores = np.concatenate([fresh_scores, pop_scores])
    _, first = np.unique(fill_codes, return_index=True)
    first = np.sort(first)
    fill_codes, fill_scores = fill_codes[first], fill_scores[first]

    read_keys = _read_keys(requested, seen, history, inputs.moment, codes, vocab, hist_to_vocab)

    # Each reader's source: the policy's for its group; the ranker by default, fresh
    # popularity when the source is missing (no ranker that day, no ALS model).
    default = "ranker" if inputs.ranker is not None and len(history) else "popular"
    policy = dict(inputs.policy or {})
    source_of = pd.Series(groups).map(lambda group: policy.get(group, default)).to_numpy()
    if inputs.ranker is None or not len(history):
        source_of[source_of == "ranker"] = "popular"
    if inputs.als is None:
        source_of[source_of == "als"] = "popular"
    by_ranker = source_of == "ranker"

    # The ranker's lists: per reader for readers in the click history, one shared list else.
    empty = (np.empty(0, dtype=np.int64),) * 2 + (np.empty(0),)
    personal = empty
    shared = (np.empty(0, dtype=np.int64), np.empty(0))
    if inputs.ranker is not None and by_ranker.any():
        context = ranking_context(history, inputs.tz, inputs.als, inputs.similar, inputs.categories)
        known = np.flatnonzero((codes >= 0) & by_ranker)
        if len(known):
            lists = rank_lists(
                inputs.ranker, context, inputs.moment, codes[known], n + _PERSONAL_EXTRA
            )
            order = np.lexsort((lists.rank, lists.user_row))
            personal = (
                known[lists.user_row[order]],
                hist_to_vocab[lists.article_code[order]],
                lists.score[order],
            )
        if ((codes < 0) & by_ranker).any():
            one = rank_lists(
                inputs.ranker, context, inputs.moment, np.array([-1]), n + _SHARED_EXTRA
            )
            order = np.argsort(one.rank, kind="stable")
            shared = (hist_to_vocab[one.article_code[order]], one.score[order])
    # ALS top-N for the groups where the evaluation found it beats popularity.
    als_rows = empty
    if inputs.als is not None and (source_of == "als").any():
        als_rows = _als_lists(inputs.als, requested, np.flatnonzero(source_of == "als"), vocab, n)

    cold = (codes < 0) & by_ranker
    parts: list[tuple[np.ndarray, ...]] = []
    for begin in range(0, len(requested), _BLOCK_READERS):
        stop = min(begin + _BLOCK_READERS, len(requested))
        positions, articles, scores, kinds = [], [], [], []
        for code, rows in ((0, personal), (2, als_rows)):
            lo, hi = np.searchsorted(rows[0], [begin, stop])
            positions.append(rows[0][lo:hi])
            articles.append(rows[1][lo:hi])
            scores.append(rows[2][lo:hi])
            kinds.append(np.full(hi - lo, code, dtype=np.int8))
        if len(shared[0]):
            block_cold = begin + np.flatnonzero(cold[begin:stop])
            positions.append(np.repeat(block_cold, len(shared[0])))
            articles.append(np.tile(shared[0], len(block_cold)))
            scores.append(np.tile(shared[1], len(block_cold)))
            kinds.append(np.zeros(len(block_cold) * len(shared[0]), dtype=np.int8))
        position = np.concatenate(positions)
        article = np.concatenate(articles)
        score = np.concatenate(scores)
        kind = np.concatenate(kinds)
        # Stable sort by reader keeps each list's order (a reader has one source).
        order = np.argsort(position, kind="stable")
        position, article, score, kind = position[order], article[order], score[order], kind[order]
        chosen = _take_unread(position, article, score, kind, read_keys, width, n)
        counts = np.bincount(chosen[0] - begin, minlength=stop - begin)
        needy = begin + np.flatnonzero(counts < n)
        parts.append(chosen)
        if len(needy) and len(fill_codes):
            taken = np.sort(chosen[0] * width + chosen[1])
            grid_pos = np.repeat(needy, len(fill_codes))
            grid_art = np.tile(fill_codes, len(needy))
            grid_score = np.tile(fill_scores, len(needy))
            free = ~_isin_sorted(grid_pos * width + grid_art, taken)
            fill = _take_unread(
                grid_pos[free],
                grid_art[free],
                grid_score[free],
                np.ones(int(free.sum()), dtype=np.int8),
                read_keys,
                width,
                n,
                start=counts[needy - begin],
                starts_for=needy,
            )
            parts.append(fill)
    position = np.concatenate([part[0] for part in parts])
    article = np.concatenate([part[1] for part in parts])
    score = np.concatenate([part[2] for part in parts])
    kind = np.concatenate([part[3] for part in parts])
    rank = np.concatenate([part[4] for part in parts])
    order = np.lexsort((rank, position))
    source = np.asarray(_SOURCE_OF_KIND, dtype=object)[kind[order]]
    return _frame(
        requested,
        groups,
        position[order],
        article[order],
        rank[order],
        score[order],
        source,
        vocab=vocab,
    )


def _als_lists(
    als: AlsModel, requested: pd.Index, positions: np.ndarray, vocab: pd.Index, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ALS top ``n + extra`` of the readers at ``positions`` that the model knows, sorted by
    (position, score): (position, vocabulary code, score). Articles outside ``vocab`` (not
    seen in the click history, the read set or the popular lists) are left out."""
    rows = pd.Index(np.asarray(als.user_ids, dtype=object).astype(str)).get_indexer(
        pd.Index(requested.to_numpy()[positions], dtype=object)
    )
    item_codes = vocab.get_indexer(pd.Index(np.asarray(als.article_ids, dtype=object).astype(str)))
    usable = item_codes >= 0
    items = np.asarray(als.item_factors, dtype=np.float32)[usable]
    item_codes = item_codes[usable].astype(np.int64)
    known = np.flatnonzero(rows >= 0)
    if not len(known) or not len(item_codes):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0)
    k = min(n + _PERSONAL_EXTRA, len(item_codes))
    block = max(1, (8 * 1024 * 1024) // len(item_codes))
    out_pos, out_art, out_score = [], [], []
    for begin in range(0, len(known), block):
        chunk = known[begin : begin + block]
        scores = np.asarray(als.user_factors, dtype=np.float32)[rows[chunk]] @ items.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        out_pos.append(np.repeat(positions[chunk], k))
        out_art.append(item_codes[top.ravel()])
        out_score.append(np.take_along_axis(values, order, axis=1).ravel().astype(np.float64))
    position = np.concatenate(out_pos)
    order = np.argsort(position, kind="stable")
    return position[order], np.concatenate(out_art)[order], np.concatenate(out_score)[order]


def _read_keys(
    requested: pd.Index,
    seen: pd.DataFrame,
    history: ClickHistory,
    moment: pd.Timestamp,
    codes: np.ndarray,
    vocab: pd.Index,
    hist_to_vocab: np.ndarray,
) -> np.ndarray:
    """Sorted ``reader position * len(vocab) + article`` keys of everything the readers have
    read (``hist_to_vocab``: the history's article codes in the vocabulary)."""
    width = np.int64(max(len(vocab), 1))
    position = requested.get_indexer(pd.Index(seen["user_id"].to_numpy(), dtype=object))
    article = vocab.get_indexer(pd.Index(seen["article_id"].to_numpy(), dtype=object))
    keep = position >= 0
    keys = [position[keep].astype(np.int64) * width + article[keep]]
    end = history.cut(moment)
    position_of_code = np.full(len(history.users), -1, dtype=np.int64)
    known = np.flatnonzero(codes >= 0)
    position_of_code[codes[known]] = known
    clicked_by = position_of_code[history.user_code[:end]]
    mine = clicked_by >= 0
    keys.append(clicked_by[mine] * width + hist_to_vocab[history.article_code[:end][mine]])
    return np.unique(np.concatenate(keys))


def _take_unread(
    position: np.ndarray,
    article: np.ndarray,
    score: np.ndarray,
    kind: np.ndarray,
    read_keys: np.ndarray,
    width: np.int64,
    n: int,
    start: np.ndarray | None = None,
    starts_for: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first unread, distinct articles of each reader's ordered rows, up to ``n`` in all.

    Rows are grouped by ``position`` in list order; ``kind`` (the row's source) is carried
    along. ``start`` (for the readers ``starts_for``) is how many each reader already has:
    ranks continue from it. Returns (position, article, score, kind, rank from 1).
    """
    keys = position * width + article
    keep = ~_isin_sorted(keys, read_keys)
    position, article, score, kind = position[keep], article[keep], score[keep], kind[keep]
    _, first = np.unique(keys[keep], return_index=True)
    first = np.sort(first)
    position, article, score, kind = position[first], article[first], score[first], kind[first]
    within = np.arange(len(position)) - np.searchsorted(position, position, side="left")
    offset = np.zeros(len(position), dtype=np.int64)
    if start is not None and starts_for is not None and len(position):
        offset = start[np.searchsorted(starts_for, position)]
    rank = within + offset + 1
    take = rank <= n
    return position[take], article[take], score[take], kind[take], rank[take]


def _frame(
    requested: pd.Index,
    groups: np.ndarray,
    position: np.ndarray,
    article: np.ndarray,
    rank: np.ndarray,
    score: np.ndarray,
    source: np.ndarray | None,
    vocab: pd.Index | None = None,
) -> pd.DataFrame:
    ids = requested.to_numpy()
    return pd.DataFrame(
        {
            "user_id": pd.Series(ids[position], dtype=str),
            "rank": rank.astype(np.int64),
            "article_id": pd.Series(
                vocab.to_numpy()[article] if vocab is not None else np.empty(0, dtype=object),
                dtype=str,
            ),
            "score": score.astype(np.float64),
            "source": pd.Series(source if source is not None else [], dtype=str),
            "group": pd.Series(groups[position], dtype=str),
        }
    )


@dataclass(frozen=True)
class ServingPolicy:
    """What the chain serves, decided from the last evaluation (:func:`choose_policy`)."""

    #: Reader group -> source (``ranker``, ``als`` or ``popular``); a group not named is ranked.
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The fresh popularity's half-life: the best-tuned ``pop_decay`` of the evaluation.
    fresh_half_life_hours: float = 0.1


def choose_policy(
    summary: pd.DataFrame,
    default_half_life_hours: float,
    min_readers: int = 1,
    protocol: str = "two_hour",
    pop_decay_hours: float = 1.0,
) -> ServingPolicy:
    """The chain's policy from an evaluation summary (``core/evaluation.summarise``).

    Fresh popularity takes the half-life of the best ``pop_decay`` over all test readers (the
    same run's tuning, down to minutes; ``default_half_life_hours`` without one). The ranker's
    chain (method ``ranker``) serves a group unless ALS (the ``als`` baseline) or that fresh
    popularity scored a higher NDCG there; ALS only where it also beats the popularity. Groups
    with fewer than ``min_readers`` test readers keep the default (ranked), so a day without
    evidence is served the default chain. ``pop_decay_hours`` is the half-life of the method
    named plain ``pop_decay``.
    """
    if summary.empty:
        return ServingPolicy(fresh_half_life_hours=default_half_life_hours)
    rows = summary.loc[summary["protocol"] == protocol]
    everyone = rows.loc[rows["group"] == "all"]
    tuned = [
        (float(ndcg), method, hours)
        for method, ndcg in zip(everyone["method"], everyone["ndcg"], strict=True)
        if (hours := pop_decay_half_life(str(method), pop_decay_hours)) is not None
    ]
    if tuned:
        _, fresh_method, fresh_hours = max(tuned, key=lambda item: (item[0], -item[2]))
    else:
        fresh_method, fresh_hours = "", default_half_life_hours
    sources: dict[str, str] = {}
    for group in GROUPS:
        mine = rows.loc[rows["group"] == group]
        if mine.empty or int(mine["users"].max()) < min_readers:
            continue
        ndcg = dict(zip(mine["method"], mine["ndcg"].astype(float), strict=True))
        scores = {
            source: ndcg[method]
            for source, method in (("ranker", "ranker"), ("als", "als"), ("popular", fresh_method))
            if method in ndcg
        }
        # Ties go to the ranker, then to popularity: ALS must strictly beat both.
        preference = {"ranker": 2, "popular": 1, "als": 0}
        best = max(scores, key=lambda source: (scores[source], preference[source]), default="")
        # Without a ranker's score, only ALS can win a group (popularity is the default then).
        if best == "als" or (best == "popular" and "ranker" in scores):
            sources[group] = best
    return ServingPolicy(sources=sources, fresh_half_life_hours=fresh_hours)


class ServedLists:
    """The served chain as an evaluation method, with the reader groups it saw.

    At each moment the inputs are what ``user_recommendations`` reads at that moment: the clicks
    of the ``clicks_days`` day partitions ending with the moment's day, cut at the moment, and
    the read set (``base.seen``, the reads before the evaluation's history, plus every click of
    the history before the moment). Everything else (ranker, ALS, similar articles, popular
    list, sections) comes from ``base``. Calls ``(moment, reader codes of history)`` and returns
    ``{user id: [article ids]}``, which :func:`recs_pipeline.core.evaluation.evaluate_day` takes.
    """

    def __init__(
        self,
        history: ClickHistory,
        clicks: pd.DataFrame,
        base: ServingInputs,
        n: int,
        active_hours: float,
        clicks_days: int,
    ) -> None:
        self.history, self.clicks, self.base = history, clicks, base
        self.n, self.active_hours, self.clicks_days = n, active_hours, clicks_days
        self.seconds = 0.0
        self.readers = 0
        self.slots = 0
        self._groups: dict[pd.Timestamp, dict[str, str]] = {}

    def __call__(self, moment: pd.Timestamp, users: np.ndarray) -> dict[str, list[str]]:
        began = time.perf_counter()
        history, base = self.history, self.base
        ids = history.users.to_numpy()[users].astype(str)
        first_day = window_days(day_of(moment, base.tz), self.clicks_days)[0]
        window_start, _ = day_bounds(first_day, base.tz)
        clicks = self.clicks
        if len(clicks):
            clicks = clicks.loc[(clicks["ts"] >= window_start) & (clicks["ts"] < moment)]
        end = history.cut(moment)
        mine = np.isin(history.user_code[:end], users)
        earlier = base.seen.loc[base.seen["user_id"].astype(str).isin(set(ids))]
        seen = pd.concat(
            [
                earlier[["user_id", "article_id"]],
                pd.DataFrame(
                    {
                        "user_id": history.users.to_numpy()[history.user_code[:end][mine]],
                        "article_id": history.articles.to_numpy()[history.article_code[:end][mine]],
                    }
                ),
            ],
            ignore_index=True,
        )
        inputs = dataclasses.replace(base, moment=moment, clicks=clicks, seen=seen)
        recs = recommendations_as_of(inputs, self.n, self.active_hours, users=list(ids))
        self._groups[moment] = dict(zip(recs["user_id"], recs["group"], strict=True))
        self.seconds += time.perf_counter() - began
        self.readers += len(ids)
        self.slots += 1
        lists = recs.groupby("user_id", sort=False)["article_id"].agg(list)
        return {str(user): list(items) for user, items in lists.items()}

    def groups(self, moment: pd.Timestamp, users: np.ndarray) -> np.ndarray:
        """Each reader's group as the chain saw it at ``moment`` (call after the lists)."""
        known = self._groups.get(moment, {})
        ids = self.history.users.to_numpy()[users].astype(str)
        return np.array([known.get(user, "no_history") for user in ids], dtype=object)


def article_registry(pages: pd.DataFrame) -> pd.DataFrame:
    """One row per article of ``pages`` for the serving ``article`` table.

    The window is the widest seen; path, title and publish time are the newest known (by
    ``last_seen``), null only where no page row has one (no page fetcher, or the CMS said
    nothing), so a publish never blanks what the registry already holds.
    """
    described = [column for column in ("path", "title", "published_at") if column in pages]
    newest_last = pages.sort_values("last_seen", kind="stable")
    return (
        newest_last.groupby("article_id", sort=True)
        .agg(
            first_seen=("first_seen", "min"),
            last_seen=("last_seen", "max"),
            # ``last`` skips nulls: the newest non-null value of each column.
            **{column: (column, "last") for column in described},
        )
        .reset_index()
    )
