"""Sessions of a clickstream and evaluation.md's session-protocol requests over them.

A session is the source's own (a ``session_id``) or, without one, a reader's clicks no more than
30 minutes apart. A session's *request* is asked just before its last click, whose article is
the truth; consecutive repeats are collapsed and sessions with fewer than 2 clicks skipped. The
replay (``recs replay``) asks these requests over HTTP, and the session ranker is trained on the
same requests of earlier days.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd

from recs_pipeline.serving.scoring import MINUTE_MS

SESSION_GAP_MS: Final = 30 * MINUTE_MS
K: Final = 20
CUTS: Final = (10, 20)


@dataclass(frozen=True)
class Query:
    ts_ms: int
    user_id: str
    session_id: str
    truth: str
    last_before: str  # the session's click before the truth


@dataclass
class Scores:
    """Hits per method at each cut: NDCG, HR, MRR sums and the number of sessions."""

    n: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, ranked: Sequence[str], truth: str) -> None:
        self.n += 1
        position = ranked.index(truth) + 1 if truth in ranked[:K] else None
        for cut in CUTS:
            hit = position is not None and position <= cut
            for metric, value in (
                ("NDCG", 1 / math.log2(position + 1) if hit and position else 0.0),
                ("HR", 1.0 if hit else 0.0),
                ("MRR", 1 / position if hit and position else 0.0),
            ):
                key = f"{metric}@{cut}"
                self.sums[key] = self.sums.get(key, 0.0) + value

    def means(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.sums.items()} if self.n else {}


def gap_sessions(clicks: pd.DataFrame, gap_ms: int = SESSION_GAP_MS) -> np.ndarray:
    """Session ids from inactivity: a reader's click more than ``gap_ms`` after the previous."""
    order = clicks.sort_values(["user_id", "ts_ms"], kind="stable")
    new = (order["user_id"] != order["user_id"].shift()) | (order["ts_ms"].diff() > gap_ms)
    numbers = new.cumsum().astype(str)
    ids = pd.Series(order["user_id"].to_numpy() + ":" + numbers.to_numpy(), index=order.index)
    return ids.sort_index().to_numpy()


def session_queries(clicks: pd.DataFrame, day_start_ms: int, day_end_ms: int) -> list[Query]:
    """One query per session that starts in the day: its last click, after collapsing repeats.

    Vectorised over the clicks (a day of Globo has some 100,000 sessions): clicks are grouped
    by (reader, session) in time order; a click repeating the one before it in its session is
    collapsed; the truth is the session's last article, ``last_before`` the collapsed click
    before it, the moment that of the session's very last click.
    """
    if clicks.empty:
        return []
    users = clicks["user_id"].to_numpy()
    sessions = clicks["session_id"].to_numpy()
    stamps = clicks["ts_ms"].to_numpy()
    articles = clicks["article_id"].to_numpy()
    user_codes = pd.factorize(users)[0]
    session_codes = pd.factorize(sessions)[0]
    order = np.lexsort((np.arange(len(clicks)), stamps, session_codes, user_codes))
    u, s, ts, a = user_codes[order], session_codes[order], stamps[order], articles[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (u[1:] != u[:-1]) | (s[1:] != s[:-1])
    group = np.cumsum(new_group) - 1
    kept = new_group.copy()
    kept[1:] |= a[1:] != a[:-1]
    n_groups = int(group[-1]) + 1
    first_ts = ts[new_group]
    last_row = np.r_[np.flatnonzero(new_group)[1:] - 1, len(order) - 1]
    kept_rows = np.flatnonzero(kept)
    kept_group = group[kept_rows]
    counts = np.bincount(kept_group, minlength=n_groups)
    # The last and second-to-last kept rows of each group.
    ends = np.cumsum(counts) - 1
    eligible = (counts >= 2) & (first_ts >= day_start_ms) & (first_ts < day_end_ms)
    chosen = np.flatnonzero(eligible)
    truth_rows = kept_rows[ends[chosen]]
    before_rows = kept_rows[ends[chosen] - 1]
    queries = [
        Query(
            int(ts[last_row[g]]),
            str(users[order[t]]),
            str(sessions[order[t]]),
            str(a[t]),
            str(a[b]),
        )
        for g, t, b in zip(chosen, truth_rows, before_rows, strict=True)
    ]
    queries.sort(key=lambda q: (q.ts_ms, q.user_id))
    return queries
