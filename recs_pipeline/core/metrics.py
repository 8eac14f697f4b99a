"""Offline ranking metrics for the next-day hold-out protocol.

One definition shared by the evaluation asset and the tests, so "HitRate@10 went up" always means
the same thing: per test user a top-K list and a truth set, binary relevance, means over users.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["RankingMetrics", "ranking_metrics"]


@dataclass(frozen=True)
class RankingMetrics:
    """Means over test users (``users`` of them) of the @K metrics, plus catalogue coverage."""

    users: int
    hit_rate: float
    recall: float
    ndcg: float
    mrr: float
    coverage: float


def ranking_metrics(
    recommendations: Mapping[str, Sequence[str]],
    truth: Mapping[str, set[str]],
    k: int = 10,
) -> RankingMetrics:
    """HitRate, Recall, NDCG and MRR at ``k`` averaged over users with a non-empty truth set.

    - HitRate@K: 1 if any of the top K is in the truth set.
    - Recall@K: hits / min(K, |truth|), so a perfect list scores 1 even when |truth| > K.
    - NDCG@K: binary gains, DCG = sum 1/log2(rank + 1) over hits, ideal DCG over min(K, |truth|).
    - MRR@K: 1 / rank of the first hit, 0 without a hit.
    - Coverage: distinct articles recommended (top K, test users) / distinct articles in the
      union of truth sets; it can exceed 1 when the lists are more varied than what was read.

    A test user without recommendations scores 0 everywhere. Repeated articles in a list count
    once (first position), so a buggy list with duplicates cannot inflate the hits.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    test_users = [user for user, items in truth.items() if items]
    if not test_users:
        return RankingMetrics(users=0, hit_rate=0.0, recall=0.0, ndcg=0.0, mrr=0.0, coverage=0.0)

    hit_sum = recall_sum = ndcg_sum = mrr_sum = 0.0
    recommended: set[str] = set()
    relevant: set[str] = set()
    for user in test_users:
        items = truth[user]
        relevant.update(items)
        top = list(dict.fromkeys(recommendations.get(user, ())))[:k]
        recommended.update(top)
        hit_ranks = [rank for rank, article in enumerate(top, start=1) if article in items]
        if not hit_ranks:
            continue
        ideal_hits = min(k, len(items))
        hit_sum += 1.0
        recall_sum += len(hit_ranks) / ideal_hits
        dcg = sum(1.0 / math.log2(rank + 1) for rank in hit_ranks)
        ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, ideal_hits + 1))
        ndcg_sum += dcg / ideal
        mrr_sum += 1.0 / hit_ranks[0]

    count = len(test_users)
    return RankingMetrics(
        users=count,
        hit_rate=hit_sum / count,
        recall=recall_sum / count,
        ndcg=ndcg_sum / count,
        mrr=mrr_sum / count,
        coverage=len(recommended) / len(relevant),
    )
