"""The simple methods every model is compared with (evaluation.md), as top-k lists per reader.

- ``pop24h``: most clicked articles in the last 24 hours.
- ``pop_decay``: time-decayed click counts (half-life of an hour by default: news ages fast).
- ``covisit``: articles co-clicked by one reader within an hour (last 7 days), scored from the
  reader's last 5 clicks, filled with ``pop_decay``.
- ``als``: implicit ALS on a trailing window, filled with ``pop_decay`` for unknown readers.

Lists never hold an article the reader clicked before the moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recs_pipeline.core.als import AlsModel, AlsParams, train_als
from recs_pipeline.core.candidates import (
    HOUR,
    CandidateParams,
    ClickHistory,
    _als_candidates,
    _isin_sorted,
    _top_per_row,
    covisitation,
    last_clicks,
)
from recs_pipeline.core.matrix import build_matrix

__all__ = [
    "BASELINES",
    "BaselineParams",
    "Lists",
    "baseline_lists",
    "baseline_names",
    "click_als",
    "fill_lists",
    "half_life_label",
    "is_baseline",
    "pop_decay_half_life",
]

BASELINES = ("pop24h", "pop_decay", "covisit", "als")


def half_life_label(hours: float) -> str:
    """``3m``, ``15m``, ``1h``, ``1.5h``: how a tuned ``pop_decay`` is named (``pop_decay_3m``)."""
    return f"{round(hours * 60)}m" if hours < 1 else f"{hours:g}h"


@dataclass(frozen=True)
class BaselineParams:
    pop_decay_half_life_hours: float = 1.0
    #: More ``pop_decay`` half-lives scored in the same run (``pop_decay_<label>``): the gate
    #: compares with the best-tuned one, down to minutes.
    pop_decay_half_lives_hours: tuple[float, ...] = ()
    #: Clicks older than this do not count for pop_decay and covisit.
    lookback_hours: float = 7 * 24.0
    covisit_window_hours: float = 1.0
    covisit_recent_clicks: int = 5


@dataclass(frozen=True)
class Lists:
    """Top-k lists: row ``i`` is a (requested reader position, article code, rank from 1)."""

    user_row: np.ndarray
    article_code: np.ndarray
    rank: np.ndarray
    score: np.ndarray

    def as_dict(self, users: np.ndarray, articles: pd.Index) -> dict[str, list[str]]:
        """``{user id: [article ids in rank order]}`` for the metrics."""
        order = np.lexsort((self.rank, self.user_row))
        rows = self.user_row[order]
        ids = articles.to_numpy()[self.article_code[order]]
        cuts = np.flatnonzero(np.diff(rows)) + 1
        out: dict[str, list[str]] = {}
        for chunk_rows, chunk_ids in zip(np.split(rows, cuts), np.split(ids, cuts), strict=True):
            if len(chunk_rows):
                out[str(users[chunk_rows[0]])] = [str(a) for a in chunk_ids]
        return out


def fill_lists(
    history: ClickHistory,
    end: int,
    user_codes: np.ndarray,
    k: int,
    primary: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    fallback: np.ndarray,
    fallback_scores: np.ndarray | None = None,
) -> Lists:
    """Each reader's ``primary`` candidates by score, then the global ``fallback`` list.

    ``primary`` is (reader position, article code, score); ``fallback`` is article codes best
    first. Articles the reader clicked before position ``end`` of the history and repeats are
    skipped; at most ``k`` per reader.
    """
    n_users = len(user_codes)
    n_articles = len(history.articles)
    parts_row: list[np.ndarray] = []
    parts_col: list[np.ndarray] = []
    parts_rank: list[np.ndarray] = []
    parts_score: list[np.ndarray] = []
    taken = np.zeros(n_users, dtype=np.int64)
    picked = np.empty(0, dtype=np.int64)
    if primary is not None and len(primary[0]):
        row, col, score = (np.asarray(a) for a in primary)
        user = user_codes[row]
        keep = (user < 0) | ~history.seen_mask(user * n_articles + col, end)
        row, col, score = row[keep], col[keep], score[keep].astype(np.float64)
        order = np.lexsort((col, -score, row))
        row, col, score = row[order], col[order], score[order]
        # A pair offered twice keeps its best score (the first after the sort).
        _, first = np.unique(row * n_articles + col, return_index=True)
        first = np.sort(first)
        row, col, score = row[first], col[first], score[first]
        rank = np.arange(len(row)) - np.searchsorted(row, row, side="left") + 1
        take = rank <= k
        row, col, score, rank = row[take], col[take], score[take], rank[take]
        parts_row.append(row)
        parts_col.append(col)
        parts_rank.append(rank)
        parts_score.append(score)
        taken = np.bincount(row, minlength=n_users)
        picked = np.sort(row * n_articles + col)
    need = k - taken
    depth = len(fallback)
    if depth and (need > 0).any():
        fb_scores = (
            fallback_scores if fallback_scores is not None else -np.arange(depth, dtype=np.float64)
        )
        users = np.flatnonzero(need > 0)
        grid_col = np.broadcast_to(fallback, (len(users), depth))
        user = np.broadcast_to(user_codes[users][:, None], (len(users), depth))
        row_key = users[:, None] * n_articles + grid_col
        free = ~(
            (user >= 0)
            & history.seen_mask((user * n_articles + grid_col).ravel(), end).reshape(
                len(users), depth
            )
        )
        free &= ~_isin_sorted(row_key.ravel(), picked).reshape(len(users), depth)
        position = np.cumsum(free, axis=1)
        chosen = free & (position <= need[users][:, None])
        r, c = np.nonzero(chosen)
        parts_row.append(users[r])
        parts_col.append(fallback[c])
        parts_rank.append(taken[users[r]] + position[r, c])
        parts_score.append(np.asarray(fb_scores, dtype=np.float64)[c])
    if not parts_row:
        empty = np.empty(0, dtype=np.int64)
        return Lists(empty, empty.copy(), empty.copy(), np.empty(0))
    row = np.concatenate(parts_row)
    col = np.concatenate(parts_col)
    rank = np.concatenate(parts_rank).astype(np.int64)
    score = np.concatenate(parts_score)
    order = np.lexsort((rank, row))
    return Lists(row[order], col[order], rank[order], score[order])


def baseline_names(params: BaselineParams) -> list[str]:
    """Every baseline a run scores: the four of evaluation.md and each tuned ``pop_decay``."""
    tuned = [
        f"pop_decay_{half_life_label(hours)}"
        for hours in sorted(set(params.pop_decay_half_lives_hours))
        if hours != params.pop_decay_half_life_hours
    ]
    return [*BASELINES, *tuned]


def pop_decay_half_life(method: str, default_hours: float) -> float | None:
    """The half-life (hours) of a ``pop_decay`` method's name (``pop_decay`` is the site's
    default half-life); None for any other method."""
    if method == "pop_decay":
        return default_hours
    if not method.startswith("pop_decay_"):
        return None
    label = method.removeprefix("pop_decay_")
    number, unit = label[:-1], label[-1:]
    try:
        value = float(number)
    except ValueError:
        return None
    return value / 60 if unit == "m" else value if unit == "h" else None


def is_baseline(name: str) -> bool:
    return name in BASELINES or name.startswith("pop_decay_")


def _half_life_of(method: str, params: BaselineParams) -> float:
    for hours in params.pop_decay_half_lives_hours:
        if method == f"pop_decay_{half_life_label(hours)}":
            return hours
    raise ValueError(f"unknown baseline {method!r}; known: {', '.join(baseline_names(params))}")


def _global_top(scores: np.ndarray, depth: int) -> np.ndarray:
    codes = np.flatnonzero(scores > 0)
    order = np.lexsort((codes, -scores[codes]))
    return codes[order][:depth]


def baseline_lists(
    method: str,
    history: ClickHistory,
    moment: pd.Timestamp,
    user_codes: np.ndarray,
    k: int = 10,
    params: BaselineParams = BaselineParams(),
    als: AlsModel | None = None,
) -> Lists:
    """One baseline's top-``k`` for the requested readers (history codes, -1 unknown)."""
    half_life = params.pop_decay_half_life_hours
    if method.startswith("pop_decay_"):
        half_life, method = _half_life_of(method, params), "pop_decay"
    now = pd.Timestamp(moment).value / 1e9
    end = history.cut(moment)
    n_articles = len(history.articles)
    window = history.span(now - params.lookback_hours * HOUR, now)
    codes = history.article_code[window]
    ages = (now - history.seconds[window]) / HOUR
    # Deep enough that k unread remain for readers who clicked many of the top articles.
    depth = k + 40
    decay = np.bincount(codes, weights=np.exp2(-ages / half_life), minlength=n_articles)
    pop_decay = _global_top(decay, depth)
    if method == "pop24h":
        counts = np.bincount(codes[ages <= 24.0], minlength=n_articles).astype(np.float64)
        top = _global_top(counts, depth)
        return fill_lists(history, end, user_codes, k, None, top, counts[top])
    if method == "pop_decay":
        return fill_lists(history, end, user_codes, k, None, pop_decay, decay[pop_decay])
    if method == "covisit":
        candidate = CandidateParams(
            covisit_window_hours=params.covisit_window_hours,
            recent_clicks=params.covisit_recent_clicks,
            lookback_hours=params.lookback_hours,
        )
        matrix = covisitation(history, window.start, end, candidate)
        recent = last_clicks(history, end, user_codes, params.covisit_recent_clicks)
        rows, cols, values, _ = _top_per_row(recent @ matrix, k + params.covisit_recent_clicks + 10)
        return fill_lists(history, end, user_codes, k, (rows, cols, values), pop_decay)
    if method == "als":
        primary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if als is not None:
            primary = _als_candidates(history, als, user_codes, k + 30)
        return fill_lists(history, end, user_codes, k, primary, pop_decay)
    raise ValueError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")


def click_als(
    history: ClickHistory, moment: pd.Timestamp, window_days: float, params: AlsParams
) -> AlsModel | None:
    """Implicit ALS on click counts of the ``window_days`` before ``moment`` (the ``als``
    baseline of evaluation.md when no ``als_model`` artifact is at hand); None without data."""
    now = pd.Timestamp(moment).value / 1e9
    window = history.span(now - window_days * 24 * HOUR, now)
    frame = pd.DataFrame(
        {
            "user_id": history.users.to_numpy()[history.user_code[window]],
            "article_id": history.articles.to_numpy()[history.article_code[window]],
            "weight": 1.0,
        }
    )
    try:
        return train_als(build_matrix(frame), params)
    except ValueError:
        return None
