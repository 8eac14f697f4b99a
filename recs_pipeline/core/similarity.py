"""Item-to-item "more like this" lists from the ALS item factors.

Cosine similarity of the factors says which articles share readers; multiplying by a freshness
decay of the *candidate* keeps a news site from suggesting last month's near-duplicate of today's
story. Scores are computed block by block so the catalogue size only bounds the time, not the
memory (no articles x articles matrix is ever materialised).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recs_pipeline.core.als import AlsModel
from recs_pipeline.core.matrix import top_k_per_row

__all__ = ["similar_articles"]

#: Float32 cells per dense score block (~64 MiB); rows per block = budget / number of articles.
_BLOCK_CELLS = 16 * 1024 * 1024


def candidate_decay(
    article_ids: np.ndarray,
    article_first_seen: pd.Series,
    as_of: pd.Timestamp,
    half_life: pd.Timedelta,
) -> np.ndarray:
    """``0.5 ** (age / half_life)`` per article; unknown first_seen counts as infinitely old (0).

    Ages are clipped at 0 so an article "first seen" after ``as_of`` (clock skew) is simply fresh.
    """
    if half_life <= pd.Timedelta(0):
        raise ValueError("half_life must be positive")
    first_seen = article_first_seen[~article_first_seen.index.duplicated(keep="first")]
    first_seen.index = first_seen.index.astype(str)
    aligned = pd.to_datetime(first_seen.reindex(pd.Index(article_ids, dtype=str)), utc=True)
    age_seconds = (as_of - aligned).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.inf)
    ages = age_seconds / half_life.total_seconds()
    return np.exp2(-np.clip(ages, 0.0, None)).astype(np.float32)


def similar_articles(
    model: AlsModel,
    article_first_seen: pd.Series,
    as_of: pd.Timestamp,
    half_life: pd.Timedelta,
    top_k: int = 10,
    among: pd.Index | None = None,
) -> pd.DataFrame:
    """Top ``top_k`` similar articles per model article: ``cosine x candidate freshness``.

    ``among`` restricts both the articles and their neighbours to some ids (the ones read in
    the last days: a news reader is not offered last month's stories), which also keeps the
    cosine to recent x recent instead of the whole catalogue squared.

    An article is never its own neighbour; candidates scoring <= 0 (dissimilar, or of unknown
    age) are left out, so a list can be shorter than ``top_k``. Ties are broken by
    ``similar_article_id``. Returns columns ``article_id, rank (from 1), similar_article_id,
    score`` sorted by article and rank.
    """
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    # Columns in id order make top_k_per_row's "lower column wins" tie-break an id tie-break.
    order = np.argsort(np.asarray(model.article_ids, dtype=str), kind="stable")
    if among is not None:
        wanted = pd.Index(np.asarray(model.article_ids, dtype=str)[order]).isin(among.astype(str))
        order = order[wanted]
    article_ids = np.asarray(model.article_ids, dtype=object)[order]
    factors = np.asarray(model.item_factors, dtype=np.float32)[order]
    n_articles = len(article_ids)
    if n_articles == 0:
        none = np.empty(0, dtype=np.int64)
        return _frame(article_ids, none, none, none, np.empty(0, dtype=np.float32))

    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    unit = factors / np.maximum(norms, np.finfo(np.float32).tiny)  # zero vectors stay zero
    decay = candidate_decay(article_ids, article_first_seen, as_of, half_life)

    block_rows = max(1, _BLOCK_CELLS // n_articles)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, n_articles, block_rows):
        stop = min(start + block_rows, n_articles)
        scores = unit[start:stop] @ unit.T
        scores *= decay[None, :]
        scores[scores <= 0] = -np.inf
        local = np.arange(stop - start)
        scores[local, start + local] = -np.inf  # never similar to itself
        rows, cols, values, ranks = top_k_per_row(scores, top_k)
        parts.append((rows + start, cols, values, ranks))

    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    values = np.concatenate([p[2] for p in parts])
    ranks = np.concatenate([p[3] for p in parts])
    return _frame(article_ids, rows, cols, ranks, values)


def _frame(
    article_ids: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    ranks: np.ndarray,
    values: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "article_id": pd.Series(article_ids[rows], dtype=str),
            "rank": (ranks + 1).astype(np.int64),
            "similar_article_id": pd.Series(article_ids[cols], dtype=str),
            "score": values.astype(np.float64),
        }
    )
