"""User x article interaction matrix and the row-wise top-k used by every scorer.

The models work on integer row/column positions; this module is the one place that maps the
string ids of the interactions frame to those positions. Ids are sorted so that the same frame
always yields the same matrix (and therefore the same seeded model), whatever the row order of
the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse

__all__ = ["InteractionMatrix", "build_matrix", "top_k_per_row"]


@dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """Confidence matrix (users x articles) plus the ids of its rows and columns.

    ``eq=False`` because element-wise numpy/scipy comparison has no single truth value; compare
    the fields explicitly when needed.
    """

    matrix: scipy.sparse.csr_matrix  # users x articles, float32 confidence
    user_ids: np.ndarray  # object array of str, row order
    article_ids: np.ndarray  # object array of str, column order

    def __post_init__(self) -> None:
        n_users, n_articles = self.matrix.shape
        if len(self.user_ids) != n_users or len(self.article_ids) != n_articles:
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match "
                f"{len(self.user_ids)} user ids x {len(self.article_ids)} article ids"
            )

    @property
    def shape(self) -> tuple[int, int]:
        n_users, n_articles = self.matrix.shape
        return int(n_users), int(n_articles)

    def user_index(self) -> dict[str, int]:
        """Row position of each user id (built once, then cached on the instance)."""
        return self._user_index

    def article_index(self) -> dict[str, int]:
        """Column position of each article id (built once, then cached on the instance)."""
        return self._article_index

    @cached_property
    def _user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    @cached_property
    def _article_index(self) -> dict[str, int]:
        return {str(a): i for i, a in enumerate(self.article_ids)}


def build_matrix(interactions: pd.DataFrame, weight: str = "weight") -> InteractionMatrix:
    """Build the users x articles confidence matrix from an interactions frame.

    Duplicate (user, article) pairs are summed, so a multi-day frame can be passed as is.
    Zero-weight pairs are dropped: they carry no confidence, and an explicit zero would be read by
    implicit's solver as a re-weighted negative rather than as "no signal". Negative or missing
    weights and missing ids are contract violations and raise ``ValueError``.
    """
    missing = {"user_id", "article_id", weight} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions frame lacks columns {sorted(missing)}")
    if interactions["user_id"].isna().any() or interactions["article_id"].isna().any():
        raise ValueError("interactions frame has missing user_id or article_id values")
    weights = pd.to_numeric(interactions[weight]).to_numpy(dtype=np.float64)
    if np.isnan(weights).any():
        raise ValueError(f"column {weight!r} has missing values")
    if (weights < 0).any():
        raise ValueError(f"column {weight!r} has negative values")

    keep = weights > 0
    kept = interactions.loc[keep]
    user_codes, user_uniques = pd.factorize(kept["user_id"].astype(str), sort=True)
    article_codes, article_uniques = pd.factorize(kept["article_id"].astype(str), sort=True)
    shape = (len(user_uniques), len(article_uniques))
    # COO -> CSR sums duplicate coordinates; summing in float64 keeps many small dwell values exact.
    coo = scipy.sparse.coo_matrix((weights[keep], (user_codes, article_codes)), shape=shape)
    csr = scipy.sparse.csr_matrix(coo.tocsr(), dtype=np.float32)
    csr.sum_duplicates()
    csr.sort_indices()
    return InteractionMatrix(
        matrix=csr,
        user_ids=np.asarray(user_uniques, dtype=object),
        article_ids=np.asarray(article_uniques, dtype=object),
    )


def top_k_per_row(
    scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best ``k`` entries of every row of a dense score block, without a full sort.

    Returns ``(rows, cols, values, ranks)`` sorted by row, then rank (0-based). Entries equal to
    ``-inf`` (how callers mark excluded candidates) or NaN are never selected, so a row can yield
    fewer than ``k`` entries. Ties are broken by the lower column, which callers make
    deterministic by ordering columns by id.

    ``np.argpartition`` would pick tied entries at the cut arbitrarily (and is about twice as
    slow as ``np.partition`` on wide float32 blocks), so the cut value is found with
    ``np.partition`` and every entry reaching it is kept before the exact, tie-aware sort.
    """
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-d array")
    n_rows, n_cols = scores.shape
    if k <= 0 or n_rows == 0 or n_cols == 0:
        empty_int = np.empty(0, dtype=np.int64)
        return empty_int, empty_int.copy(), np.empty(0, dtype=scores.dtype), empty_int.copy()
    valid = scores > -np.inf  # also drops NaN
    if k < n_cols:
        cut = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]
        valid &= scores >= cut[:, None]
    rows, cols = np.nonzero(valid)
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    ranks = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = ranks < k
    return (
        rows[keep].astype(np.int64),
        cols[keep].astype(np.int64),
        values[keep],
        ranks[keep].astype(np.int64),
    )
