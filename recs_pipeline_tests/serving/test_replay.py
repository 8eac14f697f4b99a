"""recs replay: the session protocol's queries, the session-kNN baseline, and a small replay
through a real `recs serve` subprocess."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
import pytest

from recs_pipeline.core.site import load_site
from recs_pipeline.serving.replay import SessionKnn, markdown, replay, session_queries

DAY = dt.date(2017, 10, 8)
START = int(dt.datetime(2017, 10, 8, 3, tzinfo=dt.UTC).timestamp() * 1000)  # midnight in SP


def frame(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    clicks = pd.DataFrame(rows, columns=["user_id", "article_id", "ts_ms", "session_id"])
    return clicks.sort_values("ts_ms", ignore_index=True)


def test_session_queries_follow_the_protocol() -> None:
    end = START + 86_400_000
    clicks = frame(
        [
            ("u1", "a", START + 1_000, "s1"),
            ("u1", "a", START + 2_000, "s1"),  # a repeat, collapsed
            ("u1", "b", START + 3_000, "s1"),
            ("u2", "a", START - 5_000, "s2"),  # starts the day before: skipped
            ("u2", "c", START + 5_000, "s2"),
            ("u3", "a", START + 6_000, "s3"),  # one click: skipped
            ("u4", "a", START + 7_000, "s4"),
            ("u4", "a", START + 8_000, "s4"),  # only repeats: skipped
        ]
    )
    queries = session_queries(clicks, START, end)
    assert [(q.user_id, q.truth, q.last_before, q.ts_ms) for q in queries] == [
        ("u1", "b", "a", START + 3_000)
    ]


def test_session_knn_votes_with_similar_recent_sessions() -> None:
    knn = SessionKnn(k=2, horizon_ms=10_000)
    for session, items, ts in (
        ("old", ["a", "z"], 0),  # outside the horizon at the query
        ("n1", ["a", "b", "x"], 20_000),
        ("n2", ["b", "y"], 21_000),
        ("n3", ["q"], 22_000),  # shares nothing
    ):
        for item in items:
            knn.add(session, item, ts)
    votes = knn.scores("me", ["a", "b"], now_ms=25_000)
    assert votes["x"] == pytest.approx(0.5 + 1.0)  # n1 shares a (1/2) and b (2/2)
    assert votes["y"] == pytest.approx(1.0)
    assert "z" not in votes and "q" not in votes


def test_replay_through_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landing = tmp_path / "clicks"
    landing.mkdir()
    rows = []
    # Everyone who reads "a" reads "b" next; "p" is the popular article of the moment.
    for i in range(40):
        t = START + i * 60_000
        rows += [
            (f"r{i}", f"s{i}", "a", t),
            (f"r{i}", f"s{i}", "b", t + 20_000),
            (f"q{i}", f"t{i}", "p", t + 30_000),
            (f"q{i}", f"t{i}", "p2", t + 31_000),
        ]
    csv = "user_id,session_id,click_article_id,click_timestamp\n" + "".join(
        f"{u},{s},{a},{t}\n" for u, s, a, t in rows
    )
    (landing / "clicks_hour_000.csv.gz").write_bytes(gzip.compress(csv.encode()))
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "mini.yaml").write_text(
        f"""name: mini
timezone: America/Sao_Paulo
start_date: 2017-10-01
events:
  format: csv
  location: {landing}
  files: "clicks_hour_*.csv*"
  columns: {{user_id: user_id, article_id: click_article_id, timestamp: click_timestamp}}
  timestamp_unit: ms
"""
    )
    monkeypatch.setenv("RECS_SITES_DIR", str(sites))
    site = load_site(sites / "mini.yaml")
    results = replay(site, [DAY], warm_hours=1)
    served = results["api (served)"]
    assert served["sessions"] == 80
    # The r-sessions' "b" comes from co-visits (after the first few), the q-sessions' "p2"
    # from live popularity: nearly everything is a hit.
    assert served["HR@20"] >= 0.9
    assert served["NDCG@20"] > results["pop_decay"]["NDCG@20"]
    assert "| api (served) | 80 |" in markdown(results)
