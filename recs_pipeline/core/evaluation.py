"""The two protocols of evaluation.md, for any set of methods, in one pass over the clicks.

- **next-day:** for a day D, lists are computed from every click before D's start (site time zone)
  and scored on the articles each reader clicked during D that they had not clicked before.
- **2-hour:** lists are recomputed at every 2-hour boundary of D from everything before it and
  scored on the following 2 hours; means are weighted by the test readers of each slot.

Test readers have a click in the scored period and one before it; a reader whose clicks in the
period were all re-reads has nothing to predict and is dropped. "Before" is the clicks of the
history and, when given, the ``earlier`` reads (the read set of the days before the history):
a reader known only from older reads is a test reader too, and an article read long ago is no
truth. Metrics are :func:`recs_pipeline.core.metrics.ranking_metrics` at K = 10, for all test
readers (group ``all``) and, when a ``groups`` function is given, for each reader group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import cast
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recs_pipeline.core.baselines import Lists, is_baseline
from recs_pipeline.core.candidates import ClickHistory
from recs_pipeline.core.metrics import ranking_metrics
from recs_pipeline.core.progress import Progress
from recs_pipeline.core.timeframe import day_bounds

__all__ = [
    "METRICS",
    "PROTOCOLS",
    "GroupsOf",
    "Method",
    "best_baseline",
    "evaluate_day",
    "slot_truth",
    "summarise",
]

PROTOCOLS = ("next_day", "two_hour")
METRICS = ("hit_rate", "recall", "ndcg", "mrr", "coverage")

#: A method: (moment, requested user codes) -> top-k lists for those users (codes or ids).
Method = Callable[[pd.Timestamp, np.ndarray], Lists | Mapping[str, Sequence[str]]]
#: Reader groups: (moment, requested user codes) -> a group name per reader.
GroupsOf = Callable[[pd.Timestamp, np.ndarray], np.ndarray]

#: The group of every test reader together.
ALL = "all"

RESULT_COLUMNS = ("protocol", "day", "slot", "group", "method", "users", *METRICS)


@dataclass(frozen=True)
class EarlierReads:
    """Reads before a history's first click, over its codes: (user, article) keys and readers."""

    keys: np.ndarray  # sorted unique user code * n_articles + article code
    readers: np.ndarray  # bool per history user code

    @classmethod
    def of(cls, history: ClickHistory, pairs: pd.DataFrame | None) -> EarlierReads | None:
        if pairs is None or pairs.empty:
            return None
        users = history.users.get_indexer(pd.Index(pairs["user_id"].astype(str), dtype=object))
        articles = history.articles.get_indexer(
            pd.Index(pairs["article_id"].astype(str), dtype=object)
        )
        readers = np.zeros(len(history.users), dtype=bool)
        readers[users[users >= 0]] = True
        both = (users >= 0) & (articles >= 0)
        keys = np.unique(users[both] * len(history.articles) + articles[both])
        return cls(keys=keys, readers=readers)


def slot_truth(
    history: ClickHistory,
    start: pd.Timestamp,
    end: pd.Timestamp,
    earlier: EarlierReads | None = None,
) -> tuple[np.ndarray, dict[str, set[str]]]:
    """Test readers (codes) and their truth for clicks in ``[start, end)``."""
    cut = history.cut(start)
    period = history.span(start, end)
    users = history.user_code[period]
    articles = history.article_code[period]
    known_before = np.zeros(len(history.users), dtype=bool)
    known_before[history.user_code[:cut]] = True
    if earlier is not None:
        known_before |= earlier.readers
    n_articles = len(history.articles)
    keys = np.unique(users * n_articles + articles)
    keys = keys[known_before[keys // n_articles]]
    keys = keys[~history.seen_mask(keys, cut)]
    if earlier is not None and len(earlier.keys):
        at = np.minimum(np.searchsorted(earlier.keys, keys), len(earlier.keys) - 1)
        keys = keys[earlier.keys[at] != keys]
    truth_users = keys // n_articles
    truth: dict[str, set[str]] = {}
    ids = history.users.to_numpy()
    article_ids = history.articles.to_numpy()
    for code, article in zip(truth_users.tolist(), (keys % n_articles).tolist(), strict=True):
        truth.setdefault(str(ids[code]), set()).add(str(article_ids[article]))
    return np.unique(truth_users), truth


def _score(
    history: ClickHistory,
    methods: Mapping[str, Method],
    moment: pd.Timestamp,
    end: pd.Timestamp,
    k: int,
    groups: GroupsOf | None = None,
    earlier: EarlierReads | None = None,
) -> list[dict[str, object]]:
    users, truth = slot_truth(history, moment, end, earlier)
    rows: list[dict[str, object]] = []
    if not len(users):
        return rows
    user_ids = history.users.to_numpy()[users]
    listed = {}
    for name, method in methods.items():
        lists = method(moment, users)
        listed[name] = (
            lists.as_dict(user_ids, history.articles) if isinstance(lists, Lists) else lists
        )
    truths = {ALL: truth}
    if groups is not None:
        group_of = groups(moment, users)
        for group in sorted(set(group_of.tolist())):
            members = user_ids[group_of == group]
            truths[group] = {str(user): truth[str(user)] for user in members}
    for group, group_truth in truths.items():
        for name, recommended in listed.items():
            metrics = ranking_metrics(recommended, group_truth, k=k)
            rows.append({"group": group, "method": name, **asdict(metrics)})
    return rows


def evaluate_day(
    history: ClickHistory,
    day: str,
    tz: ZoneInfo,
    methods: Mapping[str, Method] | Callable[[pd.Timestamp], Mapping[str, Method]],
    k: int = 10,
    protocols: tuple[str, ...] = PROTOCOLS,
    until: pd.Timestamp | None = None,
    slot_hours: int = 2,
    groups: GroupsOf | None = None,
    earlier: pd.DataFrame | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per-slot metrics of every method for one day (``slot`` is the slot's start, UTC).

    ``methods`` may be a function of the day's start that builds them (e.g. a model trained as of
    that moment). ``until`` stops at a moment inside the day: only slots (and a next-day score)
    that ended by then are scored, so a running day is evaluated on what it has seen.
    ``groups`` adds a row per reader group; ``earlier`` is the (user_id, article_id) reads before
    the history's first click (they make test readers and are never truth). ``progress``
    hears about each slot scored.
    """
    start, end = day_bounds(day, tz)
    known = EarlierReads.of(history, earlier)
    built = methods(start) if callable(methods) else methods
    limit = end if until is None else min(end, pd.Timestamp(until))
    rows: list[dict[str, object]] = []
    slots = math.ceil((min(end, limit) - start) / pd.Timedelta(hours=slot_hours))
    first = next(iter(built), None)
    readers = 0

    def scored(slot: int, of: str, slot_rows: list[dict[str, object]]) -> None:
        nonlocal readers
        readers += sum(
            cast(int, row["users"])
            for row in slot_rows
            if row["group"] == ALL and row["method"] == first
        )
        if progress is not None:
            progress.step(slot, f"of {of} slots scored ({readers:,} test readers so far)")

    if "next_day" in protocols and limit >= end:
        day_rows = list(_score(history, built, start, end, k, groups, known))
        rows.extend({"protocol": "next_day", "day": day, "slot": start, **row} for row in day_rows)
        scored(1, "1 next-day", day_rows)
    if "two_hour" in protocols:
        if progress is not None:
            progress.say(f"scoring up to {max(slots, 0)} 2-hour slots")
        boundary, number = start, 0
        while boundary < end:
            slot_end = min(boundary + pd.Timedelta(hours=slot_hours), end)
            if slot_end > limit:
                break
            slot_rows = list(_score(history, built, boundary, slot_end, k, groups, known))
            rows.extend(
                {"protocol": "two_hour", "day": day, "slot": boundary, **row} for row in slot_rows
            )
            number += 1
            scored(number, f"{slots} 2-hour", slot_rows)
            boundary = slot_end
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return frame


def summarise(
    results: pd.DataFrame, by: tuple[str, ...] = ("protocol", "group", "method")
) -> pd.DataFrame:
    """Means weighted by test readers per slot (the 2-hour protocol's rule).

    For the next-day protocol over several days this is the mean weighted by each day's readers;
    ``summarise_days`` gives the plain mean of days that evaluation.md quotes.
    """
    if results.empty:
        return pd.DataFrame(columns=[*by, "users", *METRICS])
    if "group" in by and "group" not in results:
        results = results.assign(group=ALL)
    weighted = results.assign(**{m: results[m] * results["users"] for m in METRICS})
    grouped = weighted.groupby(list(by), sort=True)[["users", *METRICS]].sum()
    for metric in METRICS:
        grouped[metric] = grouped[metric] / grouped["users"]
    return grouped.reset_index()


def summarise_days(results: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and method: each day's (reader-weighted) means, then the mean over days."""
    if results.empty:
        return pd.DataFrame(columns=["protocol", "group", "method", "users", *METRICS])
    by = ["protocol", "group", "method"]
    daily = summarise(results, by=(*by, "day"))
    means = daily.groupby(by, sort=True)[list(METRICS)].mean()
    means.insert(0, "users", daily.groupby(by, sort=True)["users"].sum())
    return means.reset_index()


def best_baseline(summary: pd.DataFrame, protocol: str, group: str = ALL) -> pd.Series | None:
    """The row of the baseline with the highest NDCG in a protocol and reader group (None if
    no baseline was scored there): the one comparison the evaluation, the gate and the
    benchmark make."""
    if summary.empty:
        return None
    rows = summary.loc[(summary["protocol"] == protocol) & summary["method"].map(is_baseline)]
    if "group" in rows:
        rows = rows.loc[rows["group"] == group]
    if rows.empty:
        return None
    return rows.sort_values(["ndcg", "method"], ascending=[False, True]).iloc[0]
