"""Candidates and features on hand-built clicks."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.core.candidates import (
    GENERATORS,
    CandidateParams,
    ClickHistory,
    article_stats,
    covisitation,
    generate_candidates,
)
from recs_pipeline.core.features import FEATURES, candidate_features

T0 = pd.Timestamp("2026-11-02T12:00:00Z")
TZ = ZoneInfo("America/Sao_Paulo")


def clicks(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """(user, article, hours before T0)."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "article_id": [r[1] for r in rows],
            "ts": [T0 - pd.Timedelta(hours=r[2]) for r in rows],
        }
    )


@pytest.fixture
def history() -> ClickHistory:
    rows = [
        # "hot" is read by many in the last hour, "old" by many a day ago.
        *[(f"r{i}", "hot", 0.5) for i in range(8)],
        *[(f"r{i}", "old", 30.0) for i in range(10)],
        # u1 read a then b within minutes, twice over: a and b co-visit.
        ("u1", "a", 3.0),
        ("u1", "b", 2.9),
        ("u2", "a", 5.0),
        ("u2", "b", 4.8),
        ("u3", "a", 1.0),
        # "new" first appears 1 hour ago.
        ("r1", "new", 1.0),
        ("r2", "new", 0.9),
        ("u3", "hot", 0.2),
        # A click after the moment must be invisible.
        ("u3", "future", -1.0),
    ]
    return ClickHistory.from_events(clicks(rows))


def test_history_cut_and_first_seen(history: ClickHistory) -> None:
    assert history.cut(T0) == len(history) - 1
    first = dict(zip(history.articles, history.first_seen, strict=True))
    assert first["new"] == pytest.approx((T0 - pd.Timedelta(hours=1)).value / 1e9)


def test_stats_decay_and_windows(history: ClickHistory) -> None:
    stats = article_stats(history, T0, CandidateParams())
    code = {a: i for i, a in enumerate(history.articles)}
    assert stats.pop_hour[code["hot"]] > stats.pop_hour[code["old"]]
    assert stats.clicks_1h[code["hot"]] == 9 and stats.clicks_24h[code["old"]] == 0
    assert stats.clicks_window[code["future"]] == 0  # after the moment
    assert stats.age_hours[code["new"]] == pytest.approx(1.0)


def test_covisitation_pairs_clicks_within_the_window(history: ClickHistory) -> None:
    matrix = covisitation(history, 0, history.cut(T0), CandidateParams()).toarray()
    code = {a: i for i, a in enumerate(history.articles)}
    assert matrix[code["a"], code["b"]] == 2 and matrix[code["b"], code["a"]] == 2
    assert matrix[code["a"], code["a"]] == 0
    # u3's clicks of a and hot are 0.8 h apart: they co-visit; old/hot are a day apart: never.
    assert matrix[code["a"], code["hot"]] == 1
    assert matrix[code["old"], code["hot"]] == 0


def test_candidates_exclude_read_articles_and_record_generators(history: ClickHistory) -> None:
    users = history.user_codes(["u3", "u1", "nobody"])
    candidates, _ = generate_candidates(history, T0, users, CandidateParams())
    ids = history.articles.to_numpy()
    by_user: dict[int, set[str]] = {}
    for row, article in zip(candidates.user_row, candidates.article_code, strict=True):
        by_user.setdefault(int(row), set()).add(str(ids[article]))
    assert not by_user[0] & {"a", "hot"}  # u3 read them
    assert "b" in by_user[0]  # co-visited with a
    assert not by_user[1] & {"a", "b"}
    assert "hot" in by_user[1] and "new" in by_user[1]
    assert "future" not in set().union(*by_user.values())
    assert {"hot", "old", "new"} <= by_user[2]  # unknown reader: global lists
    code = {a: i for i, a in enumerate(history.articles)}
    u3_b = (candidates.user_row == 0) & (candidates.article_code == code["b"])
    assert candidates.scores["covisit"][u3_b][0] > 0
    assert candidates.ranks["covisit"][u3_b][0] == 1
    u1_new = (candidates.user_row == 1) & (candidates.article_code == code["new"])
    u1_hot = (candidates.user_row == 1) & (candidates.article_code == code["hot"])
    assert candidates.ranks["fresh"][u1_hot][0] == 1  # first seen 0.5 h ago: the freshest
    assert candidates.ranks["fresh"][u1_new][0] == 2
    assert np.isnan(candidates.ranks["als"]).all()  # no ALS model given
    assert set(candidates.scores) == set(GENERATORS)
    assert len(np.unique(candidates.user_row * 100 + candidates.article_code)) == len(candidates)


def test_features_cover_every_column(history: ClickHistory) -> None:
    users = history.user_codes(["u3", "u1"])
    params = CandidateParams()
    candidates, stats = generate_candidates(history, T0, users, params)
    categories = pd.Series({"a": "politics", "b": "politics", "hot": "sport", "new": "sport"})
    frame = candidate_features(
        history, T0, users, candidates, stats, TZ, params.lookback_hours, categories
    )
    assert list(frame.columns) == list(FEATURES)
    assert len(frame) == len(candidates)
    code = {a: i for i, a in enumerate(history.articles)}
    u3_b = np.flatnonzero((candidates.user_row == 0) & (candidates.article_code == code["b"]))[0]
    row = frame.iloc[u3_b]
    assert row["user_clicks"] == 2  # a and hot (the future click is not counted)
    assert row["user_hours_since_last"] == pytest.approx(0.2, abs=1e-3)
    assert row["session_open"] == 1
    assert row["category_affinity"] == pytest.approx(0.5)  # one of two clicks in politics
    assert row["hour_of_day"] == pytest.approx(9.0)  # 12:00 UTC is 09:00 in Sao Paulo
    u1_new = np.flatnonzero((candidates.user_row == 1) & (candidates.article_code == code["new"]))
    assert frame.iloc[u1_new[0]]["new_since_last_visit"] == 1  # published after u1's last click


def test_next_click_transitions_are_directed_and_offered(history: ClickHistory) -> None:
    from recs_pipeline.core.candidates import transitions

    now = T0.value / 1e9
    moves = transitions(history, history.cut(T0), now, CandidateParams()).toarray()
    code = {a: i for i, a in enumerate(history.articles)}
    assert moves[code["a"], code["b"]] > 0  # u1 and u2 went from a to b
    assert moves[code["b"], code["a"]] == 0  # never the other way
    reader = ClickHistory.from_events(
        clicks(
            [
                ("u1", "a", 3.0),
                ("u1", "b", 2.9),
                ("u2", "a", 2.0),
                ("u2", "c", 1.9),
                ("me", "a", 0.1),
            ]
        )
    )
    candidates, _ = generate_candidates(reader, T0, reader.user_codes(["me"]), CandidateParams())
    offered = {
        str(reader.articles[article]): rank
        for article, rank in zip(candidates.article_code, candidates.ranks["next"], strict=True)
        if not np.isnan(rank)
    }
    # From a, readers went to b and c; c more recently, so it ranks first.
    assert offered == {"c": 1, "b": 2}
