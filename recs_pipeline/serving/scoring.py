"""The serving maths as plain functions: decay, trend, sessions, blending, the fallback chain.

Decayed counts are stored the usual way for streams: an event at time ``t`` adds
``2 ** ((t - ref) / half_life)`` to its article's value, where ``ref`` is the table's reference
moment; the count *at* a moment ``now`` is ``value * 2 ** (-(now - ref) / half_life)``. Adding an
event is then one addition whatever the order of arrival (a late event simply adds less), and a
common factor never changes an order, so top-N needs no decaying pass at all. When the exponent
grows large the table is *rebased* (every value multiplied by the same factor, ``ref`` moved).

All times are milliseconds since the epoch (event time: the serving clock is the newest accepted
event, never the wall clock).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

Source = Literal["live", "session", "personal", "similar", "popular"]
SOURCES: Final[tuple[Source, ...]] = ("live", "session", "personal", "similar", "popular")

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
#: Rebase a decayed table when its exponent passes this many half-lives (2**300 is far from
#: a float's range, and rebasing stays rare: every 15 hours at a 3-minute half-life).
REBASE_HALF_LIVES: Final = 300.0
#: The least weight of the personal list in a blend: it orders the candidates that neither live
#: signal knows, and barely moves the others.
PERSONAL_FLOOR: Final = 1e-3


def growth(ts_ms: int, ref_ms: int, half_life_ms: float) -> float:
    """What one event at ``ts_ms`` adds to a decayed table whose reference moment is ``ref_ms``."""
    return math.pow(2.0, (ts_ms - ref_ms) / half_life_ms)


def decay_factor(ref_ms: int, now_ms: int, half_life_ms: float) -> float:
    """The factor turning a table's stored values into decayed counts at ``now_ms``."""
    return math.pow(2.0, -(now_ms - ref_ms) / half_life_ms)


def needs_rebase(ref_ms: int, ts_ms: int, half_life_ms: float) -> bool:
    return (ts_ms - ref_ms) / half_life_ms > REBASE_HALF_LIVES


def decayed_count(event_times_ms: Iterable[int], now_ms: int, half_life_ms: float) -> float:
    """The decayed count of some events at ``now_ms`` computed directly (the reference)."""
    return sum(math.pow(2.0, -(now_ms - t) / half_life_ms) for t in event_times_ms)


def rate_per_hour(count: float, half_life_ms: float) -> float:
    """Events per hour that a steady stream needs to hold a decayed count at ``count``.

    A steady rate ``r`` per ms holds ``r * half_life / ln 2``; so counts at different
    half-lives become comparable rates.
    """
    return count * math.log(2.0) / half_life_ms * HOUR_MS


def trend(short: float, long: float, short_half_life_ms: float, long_half_life_ms: float) -> float:
    """The short-memory rate over the long-memory one: > 1 rising, < 1 fading, 0 unknown."""
    long_rate = rate_per_hour(long, long_half_life_ms)
    if long_rate <= 0.0:
        return 0.0
    return rate_per_hour(short, short_half_life_ms) / long_rate


def top_n(values: Mapping[str, float], n: int, skip: Iterable[str] = ()) -> list[tuple[str, float]]:
    """The ``n`` largest entries (ties by id, so answers are deterministic), minus ``skip``."""
    if n <= 0:
        return []
    skipped = set(skip)
    items = ((k, v) for k, v in values.items() if k not in skipped)
    return heapq.nsmallest(n, items, key=lambda kv: (-kv[1], kv[0]))


def scaled_to_max(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores divided by the largest (so two signals of different units can be added)."""
    top = max(scores.values(), default=0.0)
    if top <= 0.0:
        return {}
    return {k: v / top for k, v in scores.items() if v > 0.0}


@dataclass(frozen=True)
class Click:
    article_id: str
    ts_ms: int
    session_id: str | None = None


def current_session(clicks: Sequence[Click], now_ms: int, gap_ms: int) -> list[Click]:
    """The clicks of the reader's session that is still open at ``now_ms``, oldest first.

    ``clicks`` are in time order. A session is the source's own ``session_id`` when the last
    click has one; otherwise clicks no more than ``gap_ms`` apart. It is open while its last click
    is no more than ``gap_ms`` before ``now_ms``; a closed session gives an empty list.
    """
    if not clicks or now_ms - clicks[-1].ts_ms > gap_ms:
        return []
    last = clicks[-1]
    session = [last]
    for click in reversed(clicks[:-1]):
        if last.session_id is not None:
            if click.session_id != last.session_id:
                break
        elif session[-1].ts_ms - click.ts_ms > gap_ms:
            break
        session.append(click)
    session.reverse()
    return session


def session_weights(
    session: Sequence[Click], depth: int, step: float = 0.5
) -> list[tuple[str, float]]:
    """The session's last ``depth`` distinct articles, newest first, weighted 1, step, step**2…"""
    weights: list[tuple[str, float]] = []
    seen: set[str] = set()
    for click in reversed(session):
        if click.article_id in seen:
            continue
        seen.add(click.article_id)
        weights.append((click.article_id, step ** len(weights)))
        if len(weights) >= depth:
            break
    return weights


def combine_neighbours(
    neighbour_lists: Sequence[tuple[float, Sequence[tuple[str, float]]]],
) -> dict[str, float]:
    """Sum of weighted neighbour lists, each first scaled to its own maximum."""
    total: dict[str, float] = {}
    for weight, neighbours in neighbour_lists:
        for article, score in scaled_to_max(dict(neighbours)).items():
            total[article] = total.get(article, 0.0) + weight * score
    return total


@dataclass(frozen=True)
class Scored:
    article_id: str
    score: float
    source: Source


def blend(
    live: Mapping[str, float],
    session: Mapping[str, float],
    personal: Sequence[tuple[str, float]],
    *,
    live_weight: float = 1.0,
    session_weight: float = 1.0,
    personal_weight: float = 0.0,
    excluded: Iterable[str] = (),
) -> list[Scored]:
    """The blended list: live popularity + session co-visitation (+ personal), best first.

    Each signal is scaled to its own maximum before weighting, so the sum does not depend on
    units (counts decayed at minutes vs co-visit weights). The personal list's candidates enter
    even when neither live signal knows them (scored by their published score's share, times
    ``personal_weight``, at least ``PERSONAL_FLOOR``). An item's ``source`` is the signal that
    contributed most to it.
    """
    skip = set(excluded)
    totals: dict[str, float] = {}
    leader: dict[str, tuple[float, Source]] = {}
    signals: tuple[tuple[Source, dict[str, float], float], ...] = (
        ("live", scaled_to_max(live), live_weight),
        ("session", scaled_to_max(session), session_weight),
        # A small floor keeps the published order among candidates no live signal knows.
        ("personal", scaled_to_max(dict(personal)), max(personal_weight, PERSONAL_FLOOR)),
    )
    for source, signal, weight in signals:
        for article, value in signal.items():
            if article in skip:
                continue
            part = weight * value
            totals[article] = totals.get(article, 0.0) + part
            best = leader.get(article)
            if best is None or part > best[0]:  # ties: the earlier source (live first)
                leader[article] = (part, source)
    ranked = sorted(totals, key=lambda a: (-totals[a], SOURCES.index(leader[a][1]), a))
    return [Scored(a, totals[a], leader[a][1]) for a in ranked]


def fill(
    k: int,
    chain: Sequence[tuple[Source, Sequence[tuple[str, float]]]],
    excluded: Iterable[str] = (),
    first: Sequence[Scored] = (),
) -> list[Scored]:
    """``first``, then each list of the fallback chain in turn, until ``k`` distinct items.

    A later list's scores are placed below everything before it (its own order kept), so the
    scores of the answer never increase down the list.
    """
    skip = set(excluded)
    out: list[Scored] = []
    seen: set[str] = set()
    for item in first:
        if len(out) >= k:
            return out
        if item.article_id not in skip and item.article_id not in seen:
            seen.add(item.article_id)
            out.append(item)
    for source, items in chain:
        if len(out) >= k:
            break
        floor = out[-1].score if out else None
        fresh = [(a, s) for a, s in items if a not in skip and a not in seen]
        if not fresh:
            continue
        scaled = scaled_to_max(dict(fresh))
        for article, _ in fresh:
            if len(out) >= k:
                break
            share = scaled.get(article, 0.0)
            # Below the previous item: a fallback list never outranks what came before it.
            score = share if floor is None else floor * (0.5 + 0.49 * share)
            seen.add(article)
            out.append(Scored(article, score, source))
            floor = score if floor is not None else None
    return out
