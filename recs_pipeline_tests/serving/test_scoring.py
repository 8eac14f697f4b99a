"""The serving maths: decayed counts, rebasing, trend, sessions, blend and fallback chain."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from recs_pipeline.serving.live import DecayedTable
from recs_pipeline.serving.scoring import (
    MINUTE_MS,
    Click,
    Scored,
    blend,
    combine_neighbours,
    current_session,
    decayed_count,
    fill,
    rate_per_hour,
    scaled_to_max,
    session_weights,
    top_n,
    trend,
)

T0 = 1_790_000_000_000


def test_decayed_table_matches_direct_sum_in_any_order_and_across_rebases() -> None:
    rng = random.Random(3)
    half_life = 3 * MINUTE_MS
    # Two days of events: many rebases at a 3-minute half-life (every 300 half-lives).
    times = sorted(T0 + rng.randrange(0, 48 * 60 * MINUTE_MS) for _ in range(2_000))
    shuffled = times[:]
    rng.shuffle(shuffled)  # late events arrive in any order
    in_order, out_of_order = DecayedTable(half_life), DecayedTable(half_life)
    for t in times:
        in_order.add("a", t)
    for t in shuffled:
        out_of_order.add("a", t)
    now = times[-1]
    expected = decayed_count(times, now, half_life)
    for table in (in_order, out_of_order):
        assert table.values["a"] * table.factor(now) == pytest.approx(expected, rel=1e-9)
    assert in_order.ref_ms is not None and in_order.ref_ms > T0  # it did rebase


def test_one_event_halves_every_half_life() -> None:
    table = DecayedTable(10 * MINUTE_MS)
    table.add("a", T0)
    assert table.values["a"] * table.factor(T0) == pytest.approx(1.0)
    assert table.values["a"] * table.factor(T0 + 10 * MINUTE_MS) == pytest.approx(0.5)
    assert table.values["a"] * table.factor(T0 + 30 * MINUTE_MS) == pytest.approx(0.125)


def test_trend_compares_rates_of_two_memories() -> None:
    short, long = 3 * MINUTE_MS, 120 * MINUTE_MS
    # A steady stream of ten clicks a minute for a day: both memories see the same rate.
    times = [T0 + i * 6_000 for i in range(14_400)]
    now = times[-1]
    steady = trend(decayed_count(times, now, short), decayed_count(times, now, long), short, long)
    assert steady == pytest.approx(1.0, rel=0.03)
    assert rate_per_hour(decayed_count(times, now, long), long) == pytest.approx(600, rel=0.02)
    # A burst in the last five minutes: rising.
    burst = times + [now - i * 1_000 for i in range(300)]
    rising = trend(decayed_count(burst, now, short), decayed_count(burst, now, long), short, long)
    assert rising > 2.0
    assert trend(1.0, 0.0, short, long) == 0.0


def test_current_session_by_session_id_or_gap() -> None:
    gap = 30 * MINUTE_MS
    clicks = [
        Click("a", T0),
        Click("b", T0 + 40 * MINUTE_MS),  # a gap: new session
        Click("c", T0 + 50 * MINUTE_MS),
    ]
    assert [c.article_id for c in current_session(clicks, T0 + 55 * MINUTE_MS, gap)] == ["b", "c"]
    assert current_session(clicks, T0 + 90 * MINUTE_MS, gap) == []  # closed
    with_ids = [Click("a", T0, "s1"), Click("b", T0 + 1, "s2"), Click("c", T0 + 2, "s2")]
    assert [c.article_id for c in current_session(with_ids, T0 + 3, gap)] == ["b", "c"]
    assert session_weights([Click("a", 1), Click("b", 2), Click("a", 3)], 3) == [
        ("a", 1.0),
        ("b", 0.5),
    ]


def test_blend_adds_scaled_signals_and_names_the_leading_source() -> None:
    live = {"x": 10.0, "y": 5.0, "z": 1.0}
    session = {"z": 4.0, "w": 2.0}
    items = blend(live, session, [("p", 0.9), ("x", 0.5)], excluded={"y"})
    by_id = {s.article_id: s for s in items}
    assert "y" not in by_id
    assert by_id["z"].score == pytest.approx(0.1 + 1.0, abs=1e-3)
    assert by_id["z"].source == "session"
    assert by_id["x"].source == "live"
    assert by_id["p"].source == "personal" and 0 < by_id["p"].score < 0.01
    assert [s.article_id for s in items] == ["z", "x", "w", "p"]
    assert scaled_to_max({"a": 2.0, "b": 1.0}) == {"a": 1.0, "b": 0.5}
    assert combine_neighbours([(1.0, [("a", 4.0), ("b", 2.0)]), (0.5, [("b", 1.0)])]) == {
        "a": 1.0,
        "b": 1.0,
    }


def test_fill_goes_down_the_chain_without_repeats_and_with_falling_scores() -> None:
    first = [Scored("a", 1.5, "live"), Scored("read", 1.2, "live")]
    chain = [
        ("similar", [("b", 0.9), ("a", 0.8)]),
        ("popular", [("c", 3.0), ("d", 1.0), ("e", 0.5)]),
    ]
    items = fill(4, chain, excluded={"read"}, first=first)  # type: ignore[arg-type]
    assert [(s.article_id, s.source) for s in items] == [
        ("a", "live"),
        ("b", "similar"),
        ("c", "popular"),
        ("d", "popular"),
    ]
    scores = [s.score for s in items]
    assert all(x > y for x, y in itertools.pairwise(scores))
    assert len(fill(10, chain)) == 5  # the catalogue allows only five
    assert top_n({"a": 1.0, "b": 1.0, "c": 2.0}, 2) == [("c", 2.0), ("a", 1.0)]
    assert not math.isnan(sum(scores))
