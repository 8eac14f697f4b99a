"""Parsing, validation, quarantine and de-duplication of events (no Dagster)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest

from recs_pipeline.core.events import (
    EventRules,
    assemble_day,
    events_from_table,
    parse_snowplow_lines,
)

TZ = ZoneInfo("America/Sao_Paulo")
RULES = EventRules(
    article_id_pattern=r"-(\d+)/?$",
    excluded_path_prefixes=("/section/", "/author/"),
    bot_user_agent_pattern="bot|crawler",
)
HOUR = pd.Timestamp("2026-11-10 15:00", tz="UTC")  # 12:00 in Sao Paulo, day 2026-11-10
NOW = pd.Timestamp("2026-11-20", tz="UTC")


def line(event_id: str, **overrides: object) -> bytes:
    record: dict[str, object] = {
        "event_id": event_id,
        "collector_tstamp": "2026-11-10 15:12:00.000",
        "domain_userid": "u1",
        "event_name": "page_view",
        "page_urlpath": "/politics/2026/11/10/budget-vote-123",
        "page_referrer": None,
        "useragent": "Mozilla/5.0",
    }
    record.update(overrides)
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


def test_every_malformed_kind_is_quarantined_with_its_reason_and_good_rows_survive() -> None:
    lines = [
        line("e1"),
        line("e2")[:-5],  # truncated JSON
        b'{"event_id": "e3", "domain_userid": "\xff\xfe"}',  # not UTF-8
        line("e4", domain_userid=...),  # missing field
        line("e5", collector_tstamp="yesterday"),
        line("e6", domain_userid=12345),
        line("e7", event_name="page_ping", collector_tstamp="2026-11-10 15:12:10.000"),
        b"[1, 2, 3]",
        b"",
    ]
    parsed = parse_snowplow_lines(b"\n".join(lines), "2026/11/10/15/a.json.gz", HOUR)
    assert parsed.lines == 8
    assert sorted(parsed.events["event_id"]) == ["e1", "e7"]
    reasons = dict(zip(parsed.quarantine["line_no"], parsed.quarantine["reason"], strict=True))
    assert reasons == {
        2: "invalid_json",
        3: "not_utf8",
        4: "missing_field",
        5: "bad_timestamp",
        6: "wrong_type",
        8: "invalid_json",
    }
    assert parsed.events["ts"].dt.tz is not None


def test_assemble_day_deduplicates_quarantines_bots_and_counts_non_articles() -> None:
    lines = [
        line("e1"),
        line("e1"),  # at-least-once delivery duplicate
        line("e2", domain_userid="bot1", useragent="Googlebot/2.1"),
        line("e3", page_urlpath="/section/politics"),
        line("e4", page_urlpath="/"),
        line("e5", event_name="link_click"),
        line("e6", collector_tstamp="1970-01-01 00:00:01.000"),
        line("e7", collector_tstamp="2026-11-10 20:00:00.000"),  # hours away from its folder
    ]
    parsed = parse_snowplow_lines(b"\n".join(lines), "f", HOUR)
    day = assemble_day([parsed], dt.date(2026, 11, 10), TZ, RULES, now=NOW)
    assert list(day.events["event_id"]) == ["e1"]
    assert day.events["article_id"].tolist() == ["123"]
    assert day.duplicates == 1
    assert day.non_article_events == 2
    assert day.quarantined_by_reason == {
        "bot": 1,
        "unknown_event": 1,
        "absurd_timestamp": 1,
        "outside_file_hour": 1,
    }
    assert day.lines_read == 8
    # every line is accounted for: kept + duplicate + non-article + quarantined
    assert len(day.events) + day.duplicates + day.non_article_events + len(day.quarantine) == 8


def test_a_file_is_quarantined_by_its_home_day_only() -> None:
    parsed = parse_snowplow_lines(line("e1") + b"\n{broken", "f", HOUR)
    home = assemble_day([parsed], dt.date(2026, 11, 10), TZ, RULES, now=NOW)
    other = assemble_day([parsed], dt.date(2026, 11, 11), TZ, RULES, now=NOW)
    assert len(home.quarantine) == 1 and len(home.events) == 1
    assert len(other.quarantine) == 0 and len(other.events) == 0


def test_events_are_assigned_to_the_day_of_the_site_time_zone() -> None:
    # 02:30 UTC on the 11th is 23:30 on the 10th in Sao Paulo (UTC-3).
    hour = pd.Timestamp("2026-11-11 02:00", tz="UTC")
    parsed = parse_snowplow_lines(
        line("late", collector_tstamp="2026-11-11 02:30:00.000"), "f", hour
    )
    assert len(assemble_day([parsed], dt.date(2026, 11, 10), TZ, RULES, now=NOW).events) == 1
    assert len(assemble_day([parsed], dt.date(2026, 11, 11), TZ, RULES, now=NOW).events) == 0


def test_reassembling_is_deterministic() -> None:
    lines = [line(f"e{i % 7}", domain_userid=f"u{i % 3}") for i in range(50)]
    parsed = parse_snowplow_lines(b"\n".join(lines), "f", HOUR)
    first = assemble_day([parsed], dt.date(2026, 11, 10), TZ, RULES, now=NOW)
    second = assemble_day([parsed], dt.date(2026, 11, 10), TZ, RULES, now=NOW)
    pd.testing.assert_frame_equal(first.events, second.events)
    assert first.duplicates == 43


def test_delimited_rows_validate_and_get_stable_event_ids() -> None:
    table = pd.DataFrame(
        {
            "user_id": ["1", "2", None, "4", "5"],
            "article_id": ["10", "11", "12", None, "13"],
            "ts": ["1762786800000", "1762786800000", "1762786800000", "1762786800000", "x"],
        },
        dtype="string",
    )
    parsed = events_from_table(table, "clicks.csv", "ms")
    assert parsed.events["user_id"].tolist() == ["1", "2"]
    assert parsed.events["event_name"].tolist() == ["page_view", "page_view"]
    assert parsed.events["event_id"].tolist() == ["1|10|1762786800000", "2|11|1762786800000"]
    assert parsed.quarantine["reason"].tolist() == [
        "missing_field",
        "missing_field",
        "bad_timestamp",
    ]
    assert parsed.quarantine["line_no"].tolist() == [4, 5, 6]  # header is line 1


@pytest.mark.parametrize("unit,value", [("s", "1762786800"), ("us", "1762786800000000")])
def test_delimited_timestamp_units(unit: str, value: str) -> None:
    table = pd.DataFrame({"user_id": ["1"], "article_id": ["9"], "ts": [value]}, dtype="string")
    parsed = events_from_table(table, "f", unit)
    assert parsed.events["ts"].iloc[0] == pd.Timestamp("2025-11-10 15:00", tz="UTC")
