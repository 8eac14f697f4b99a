"""Baselines and the two protocols of evaluation.md on hand-built clicks."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core.baselines import BaselineParams, baseline_lists
from recs_pipeline.core.candidates import ClickHistory
from recs_pipeline.core.evaluation import evaluate_day, slot_truth, summarise, summarise_days
from recs_pipeline.core.timeframe import day_bounds

TZ = ZoneInfo("America/Sao_Paulo")
DAY = "2026-11-03"
START, END = day_bounds(DAY, TZ)


def at(hours: float) -> pd.Timestamp:
    return START + pd.Timedelta(hours=hours)


def frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "article_id": [r[1] for r in rows],
            "ts": [at(r[2]) for r in rows],
        }
    )


@pytest.fixture
def history() -> ClickHistory:
    rows = [
        # Before the day: "big" was huge yesterday morning, "late" is read in the last hour.
        *[(f"x{i}", "big", -20.0) for i in range(10)],
        *[(f"y{i}", "late", -0.5) for i in range(4)],
        ("alice", "big", -20.0),
        ("bob", "late", -0.4),
        ("carol", "a1", -3.0),
        ("carol", "a2", -2.8),
        ("dave", "a1", -1.0),
        # During the day.
        ("alice", "late", 1.0),
        ("alice", "big", 1.5),  # a re-read: never truth
        ("bob", "big", 3.0),
        ("dave", "a2", 0.5),
        ("newcomer", "late", 1.0),  # no click before the day: not a test reader
    ]
    return ClickHistory.from_events(frame(rows))


def lists_of(history: ClickHistory, method: str, users: list[str], moment: pd.Timestamp) -> dict:
    codes = history.user_codes(users)
    lists = baseline_lists(method, history, moment, codes, k=3)
    return lists.as_dict(np.asarray(users, dtype=object), history.articles)


def test_pop24h_and_pop_decay_differ_on_freshness(history: ClickHistory) -> None:
    got24 = lists_of(history, "pop24h", ["zed"], START)
    decay = lists_of(history, "pop_decay", ["zed"], START)
    assert got24["zed"][0] == "big"  # 11 clicks in 24 h
    assert decay["zed"][0] == "late"  # 1-hour half-life: the last hour wins
    slow = baseline_lists(
        "pop_decay",
        history,
        START,
        history.user_codes(["zed"]),
        k=1,
        params=BaselineParams(pop_decay_half_life_hours=48),
    )
    assert history.articles[slow.article_code[0]] == "big"


def test_baselines_never_list_read_articles(history: ClickHistory) -> None:
    for method in ("pop24h", "pop_decay", "covisit", "als"):
        got = lists_of(history, method, ["alice", "bob", "carol"], START)
        assert "big" not in got["alice"], method
        assert "late" not in got["bob"], method
        assert not {"a1", "a2"} & set(got["carol"]), method
        assert all(len(v) == len(set(v)) for v in got.values())


def test_covisit_scores_from_last_clicks_then_fills(history: ClickHistory) -> None:
    got = lists_of(history, "covisit", ["dave"], START)
    assert got["dave"][0] == "a2"  # carol read a1 then a2 within the hour
    assert len(got["dave"]) == 3  # filled with pop_decay


def test_slot_truth_drops_rereads_and_newcomers(history: ClickHistory) -> None:
    users, truth = slot_truth(history, START, END)
    assert truth == {"alice": {"late"}, "bob": {"big"}, "dave": {"a2"}}
    assert len(users) == 3


def test_evaluate_day_both_protocols(history: ClickHistory) -> None:
    calls: list[pd.Timestamp] = []

    def method(moment: pd.Timestamp, users: np.ndarray):  # type: ignore[no-untyped-def]
        calls.append(moment)
        return baseline_lists("pop_decay", history, moment, users, k=10)

    results = evaluate_day(history, DAY, TZ, {"pop_decay": method})
    next_day = results.loc[results["protocol"] == "next_day"].iloc[0]
    assert next_day["users"] == 3
    # pop_decay at midnight: late (5 clicks in the last hour), a1, a2, big (20 h old).
    # alice: late at rank 1; bob (read late): a1, a2, big -> rank 3; dave (read a1): late, a2.
    expected = (1 + 1 / math.log2(4) + 1 / math.log2(3)) / 3
    assert next_day["ndcg"] == pytest.approx(expected)
    assert next_day["hit_rate"] == 1.0
    two_hour = results.loc[results["protocol"] == "two_hour"]
    # Slots with test readers: 00-02 (alice, dave) and 02-04 (bob).
    assert list(two_hour["users"]) == [2, 1]
    assert calls[0] == START and calls[-1] == at(2)
    weighted = summarise(results)
    row = weighted.loc[weighted["protocol"] == "two_hour"].iloc[0]
    assert row["users"] == 3
    assert row["ndcg"] == pytest.approx(
        (two_hour["ndcg"] * two_hour["users"]).sum() / two_hour["users"].sum()
    )
    per_day = summarise_days(results)
    assert set(per_day["protocol"]) == {"next_day", "two_hour"}


def test_a_running_day_scores_only_finished_slots(history: ClickHistory) -> None:
    def method(moment: pd.Timestamp, users: np.ndarray):  # type: ignore[no-untyped-def]
        return baseline_lists("pop24h", history, moment, users, k=10)

    results = evaluate_day(history, DAY, TZ, {"pop24h": method}, until=at(2.5))
    assert set(results["protocol"]) == {"two_hour"}
    assert list(results["slot"]) == [START]
