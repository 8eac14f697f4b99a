"""Per-user top-n lists: ALS scores first, time-decayed popularity as the fallback.

Scoring is a dense ``users x articles`` product, so it is done in blocks of users sized to a
fixed cell budget: memory stays bounded for millions of users while each block is still one BLAS
call (no Python loop over users). The popular fill is vectorised the same way, as a
``users x popular`` cross product filtered with integer (user, article) keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recs_pipeline.core.als import AlsModel, AlsParams
from recs_pipeline.core.matrix import InteractionMatrix, build_matrix, top_k_per_row

__all__ = ["popular_only_recommendations", "user_recommendations"]

#: Cells per dense block (~64 MiB of float32 scores); rows per block = budget / width.
_BLOCK_CELLS = 16 * 1024 * 1024

RECOMMENDATION_OUTPUT_COLUMNS = ("user_id", "rank", "article_id", "score", "source")


def _as_str_ids(values: np.ndarray | Sequence[str] | pd.Index) -> np.ndarray:
    return np.asarray(values, dtype=object).astype(str)


def user_recommendations(
    model: AlsModel,
    matrix: InteractionMatrix,
    popular: pd.DataFrame,
    n: int = 20,
    users: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Top ``n`` articles for every user of ``matrix`` (or for ``users``, in the given order).

    ALS candidates are ranked by the dot product of user and item factors, and every article the
    user has in ``matrix`` is excluded (we do not recommend what was already read). When fewer than
    ``n`` remain, the list is filled from ``popular`` (in its rank order) with articles neither
    read nor already listed, marked ``source="popular"``; users the model does not know get the
    popular list only. Ties go to the smaller ``article_id``. Returns columns ``user_id, rank
    (from 1), article_id, score, source`` sorted by user (request order) and rank; ALS and
    popular scores are on different scales, which is why ``source`` is kept.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if model.user_factors.shape[1] != model.item_factors.shape[1]:
        raise ValueError("model user and item factors have different widths")
    if users is None:
        requested = _as_str_ids(matrix.user_ids)
    else:
        requested = _as_str_ids(list(dict.fromkeys(str(u) for u in users)))  # dedupe, keep order

    # Items in id order, so top_k_per_row's lower-column tie-break is an article_id tie-break.
    model_article_ids = _as_str_ids(model.article_ids)
    order = np.argsort(model_article_ids, kind="stable")
    item_ids = model_article_ids[order]
    item_factors = np.asarray(model.item_factors, dtype=np.float32)[order]

    ranked = popular.sort_values("rank", kind="mergesort")
    pop_ids_all = ranked["article_id"].astype(str).to_numpy(dtype=object)
    first = ~pd.Index(pop_ids_all).duplicated(keep="first")
    pop_ids = _as_str_ids(pop_ids_all[first])
    pop_scores = ranked["score"].to_numpy(dtype=np.float64)[first]

    matrix_article_ids = _as_str_ids(matrix.article_ids)
    vocab = np.unique(np.concatenate([item_ids, matrix_article_ids, pop_ids]))
    vocab_index = pd.Index(vocab)
    n_vocab = np.int64(max(len(vocab), 1))
    item_code = vocab_index.get_indexer(item_ids).astype(np.int64)
    pop_code = vocab_index.get_indexer(pop_ids).astype(np.int64)
    matrix_code = vocab_index.get_indexer(matrix_article_ids).astype(np.int64)
    matrix_col_to_item = pd.Index(item_ids).get_indexer(matrix_article_ids)

    model_rows = pd.Index(_as_str_ids(model.user_ids)).get_indexer(requested)
    matrix_rows = pd.Index(_as_str_ids(matrix.user_ids)).get_indexer(requested)
    csr = matrix.matrix.tocsr()
    row_lengths = np.diff(csr.indptr)
    history_lengths = np.where(matrix_rows >= 0, row_lengths[np.maximum(matrix_rows, 0)], 0)

    n_items = len(item_ids)
    fill_depth_bound = min(len(pop_ids), n + int(history_lengths.max(initial=0)))
    block_rows = max(1, _BLOCK_CELLS // max(n_items, fill_depth_bound, 1))

    positions: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    ranks: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    from_als: list[np.ndarray] = []
    for start in range(0, len(requested), block_rows):
        stop = min(start + block_rows, len(requested))
        size = stop - start
        block_model_rows = model_rows[start:stop]
        block_matrix_rows = matrix_rows[start:stop]

        # History of the block's users as (local row, matrix column) pairs.
        with_history = np.flatnonzero(block_matrix_rows >= 0)
        sub = csr[block_matrix_rows[with_history]]
        history_local = np.repeat(with_history, np.diff(sub.indptr))
        history_cols = sub.indices.astype(np.int64)

        # ALS part: one dense product per block, read articles masked with -inf.
        known = np.flatnonzero(block_model_rows >= 0)
        als_local = np.empty(0, dtype=np.int64)
        als_code = np.empty(0, dtype=np.int64)
        if known.size and n_items:
            block_scores = model.user_factors[block_model_rows[known]].astype(np.float32)
            block_scores = block_scores @ item_factors.T
            score_row = np.full(size, -1, dtype=np.int64)
            score_row[known] = np.arange(known.size)
            hist_rows = score_row[history_local]
            hist_items = matrix_col_to_item[history_cols]
            masked = (hist_rows >= 0) & (hist_items >= 0)
            block_scores[hist_rows[masked], hist_items[masked]] = -np.inf
            rows, cols, values, als_rank = top_k_per_row(block_scores, n)
            als_local = known[rows]
            als_code = item_code[cols]
            positions.append(als_local + start)
            codes.append(als_code)
            ranks.append(als_rank)
            scores.append(values.astype(np.float64))
            from_als.append(np.ones(len(rows), dtype=bool))

        # Popular fill for every user with fewer than n ALS items.
        counts = np.bincount(als_local, minlength=size)
        need = n - counts
        fill_local = np.flatnonzero(need > 0)
        if fill_local.size and len(pop_ids):
            depth = min(len(pop_ids), n + int(history_lengths[start + fill_local].max()))
            cand_local = np.repeat(fill_local, depth)
            cand_pop = np.tile(np.arange(depth), fill_local.size)
            keys = (cand_local + start) * n_vocab + pop_code[cand_pop]
            excluded = np.concatenate(
                [
                    (history_local + start) * n_vocab + matrix_code[history_cols],
                    (als_local + start) * n_vocab + als_code,
                ]
            )
            keep = ~np.isin(keys, excluded)
            cand_local, cand_pop = cand_local[keep], cand_pop[keep]
            within = np.arange(len(cand_local)) - np.searchsorted(cand_local, cand_local, "left")
            take = within < need[cand_local]
            cand_local, cand_pop, within = cand_local[take], cand_pop[take], within[take]
            positions.append(cand_local + start)
            codes.append(pop_code[cand_pop])
            ranks.append(counts[cand_local] + within)
            scores.append(pop_scores[cand_pop])
            from_als.append(np.zeros(len(cand_local), dtype=bool))

    if not positions:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=str),
                "rank": pd.Series(dtype=np.int64),
                "article_id": pd.Series(dtype=str),
                "score": pd.Series(dtype=np.float64),
                "source": pd.Series(dtype=str),
            }
        )
    position = np.concatenate(positions)
    rank = np.concatenate(ranks)
    sort = np.lexsort((rank, position))
    position, rank = position[sort], rank[sort]
    is_als = np.concatenate(from_als)[sort]
    return pd.DataFrame(
        {
            "user_id": pd.Series(requested[position], dtype=str),
            "rank": (rank + 1).astype(np.int64),
            "article_id": pd.Series(vocab[np.concatenate(codes)[sort]], dtype=str),
            "score": np.concatenate(scores)[sort],
            "source": pd.Series(np.where(is_als, "als", "popular"), dtype=str),
        }
    )


def popular_only_recommendations(
    interactions: pd.DataFrame, popular: pd.DataFrame, n: int = 20
) -> pd.DataFrame:
    """Popular articles minus each user's reads, for a day with too little data for ALS.

    Same code path as :func:`user_recommendations` with a model that knows nobody, so the
    exclusion and fill rules cannot drift apart.
    """
    matrix = build_matrix(interactions)
    nobody = AlsModel(
        user_ids=np.empty(0, dtype=object),
        article_ids=np.empty(0, dtype=object),
        user_factors=np.zeros((0, 1), dtype=np.float32),
        item_factors=np.zeros((0, 1), dtype=np.float32),
        params=AlsParams(factors=1),
        training_seconds=0.0,
    )
    return user_recommendations(nobody, matrix, popular, n=n)
