"""Issue 12, item 1: a control character sent by a reader's cookie or a page URL can neither reach
the lake as an id nor stop a Postgres COPY (the analytics mirror, the publisher's articles and
recommendation rows), on the real Postgres server."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest

from recs_pipeline.adapters.postgres_tables import PostgresTables
from recs_pipeline.adapters.publishing import PostgresPublisher, RecommendationBatch
from recs_pipeline.adapters.sources import event_source
from recs_pipeline.core.events import EventRules, assemble_day, parse_snowplow_lines
from recs_pipeline.core.site import SiteConfig

HOUR = pd.Timestamp("2026-11-10 15:00", tz="UTC")
NOW = pd.Timestamp("2026-12-01", tz="UTC")
#: What NUL becomes in Postgres text (adapters.publishing.postgres.NUL_REPLACEMENT).
NUL_REPLACEMENT = "\ufffd"


def snowplow(event_id: str, **fields: object) -> bytes:
    record: dict[str, object] = {
        "event_id": event_id,
        "collector_tstamp": "2026-11-10 15:12:00.000",
        "domain_userid": "u1",
        "event_name": "page_view",
        "page_urlpath": "/politics/budget-123",
        "useragent": "Mozilla/5.0",
    }
    record.update(fields)
    return orjson.dumps(record)


def test_snowplow_control_characters_in_ids_and_urls_are_quarantined() -> None:
    lines = [
        snowplow("good"),
        snowplow("nul-user", domain_userid="u\u0000x"),
        snowplow("bell-user", domain_userid="u\u0007"),
        snowplow("nul\u0000id"),
        snowplow("url", page_url="https://news.example.com/a\u0000b-123"),
        snowplow("path", page_urlpath="/politics/\ttab-123"),
        snowplow("ref", page_referrer="https://x.example/\u001b[31m"),
        snowplow("del", domain_userid="u\u007f"),
        snowplow("ua-is-not-an-id", useragent="Mozilla\u0000/5.0"),
    ]
    parsed = parse_snowplow_lines(b"\n".join(lines), "2026/11/10/15/a.json.gz", HOUR)
    assert parsed.lines == len(lines)
    assert sorted(parsed.events["event_id"]) == ["good", "ua-is-not-an-id"]
    reasons = dict(zip(parsed.quarantine["line_no"], parsed.quarantine["reason"], strict=True))
    assert reasons == dict.fromkeys(range(2, 9), "control_character")
    day = assemble_day([parsed], dt.date(2026, 11, 10), ZoneInfo("UTC"), EventRules(), now=NOW)
    assert day.quarantined_by_reason == {"control_character": 7}
    for column in ("user_id", "event_id", "path", "article_id"):
        assert not day.events[column].str.contains("\x00").any()


def test_csv_and_mind_control_characters_are_quarantined(tmp_path: Path) -> None:
    landing = tmp_path / "csv"
    landing.mkdir()
    rows = [
        "user_id,click_article_id,click_timestamp",
        "u1,10,1794323520000",
        "u\x002,11,1794323520000",
        "u3,1\x002,1794323520000",
        "u4,13,1794323520000",
    ]
    (landing / "clicks.csv.gz").write_bytes(gzip.compress("\n".join(rows).encode() + b"\n"))
    config = SiteConfig.model_validate(
        {
            "name": "s",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {
                "format": "csv",
                "location": str(landing),
                "columns": {
                    "user_id": "user_id",
                    "article_id": "click_article_id",
                    "timestamp": "click_timestamp",
                },
            },
        }
    )
    day = dt.date(2026, 11, 10)
    [(_, result)] = list(event_source(config).read_days([day], now=NOW))
    assert sorted(result.events["user_id"]) == ["u1", "u4"]
    assert sorted(result.quarantine["line_no"]) == [3, 4]
    assert set(result.quarantine["reason"]) == {"control_character"}

    mind = tmp_path / "mind"
    mind.mkdir()
    (mind / "behaviors.tsv").write_text(
        "1\tU1\t11/10/2026 3:00:00 PM\tN1\tN2-1 N3-0\n2\tU\x002\t11/10/2026 3:00:00 PM\tN1\tN2-1\n",
        encoding="utf-8",
    )
    mind_site = SiteConfig.model_validate(
        {
            "name": "m",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {"format": "mind", "location": str(mind)},
        }
    )
    [(_, result)] = list(event_source(mind_site).read_days([day], now=NOW))
    assert set(result.events["user_id"]) == {"U1"}
    assert result.quarantined_by_reason == {"control_character": 1}


def test_the_analytics_mirror_copies_text_with_nul(pg_url: str) -> None:
    tables = PostgresTables(pg_url)
    frame = pd.DataFrame(
        {
            "date": ["2026-11-10", "2026-11-10"],
            "user_id": ["u\x00evil", "plain"],
            "note": ["a\x00b\x00", None],
            "score": [1.0, 2.0],
        }
    )
    assert tables.replace_days("site", "user_recommendations", ["2026-11-10"], frame) == 2
    back = tables.read_days("site", "user_recommendations", ["2026-11-10"])
    assert back is not None
    assert sorted(back["user_id"]) == ["plain", f"u{NUL_REPLACEMENT}evil"]
    assert f"a{NUL_REPLACEMENT}b{NUL_REPLACEMENT}" in back["note"].tolist()


def test_the_publisher_copies_articles_and_rows_with_nul(pg_url: str) -> None:
    publisher = PostgresPublisher(pg_url)
    seen = pd.Timestamp("2026-11-10 12:00", tz="UTC")
    articles = pd.DataFrame(
        {
            "article_id": ["a\x001", "a2"],
            "first_seen": [seen, seen],
            "last_seen": [seen, seen],
            "path": ["/x\x00-1", "/y-2"],
            "title": ["Title\x00 with NUL", None],
        }
    )
    assert publisher.upsert_articles("site", articles) == 2

    rows = pd.DataFrame(
        {
            "source_entity_id": ["u\x00evil", "u\x00evil", "plain"],
            "rank": [1, 2, 1],
            "recommended_article_id": ["a\x001", "a2", "a2"],
            "score": [0.9, 0.5, 0.7],
        }
    )
    popular = pd.DataFrame(
        {
            "source_entity_id": ["default"],
            "rank": [1],
            "recommended_article_id": ["a2"],
            "score": [1.0],
        }
    )
    published = publisher.publish(
        "site",
        dt.datetime(2026, 11, 10, 13, tzinfo=dt.UTC),
        [RecommendationBatch("user", rows), RecommendationBatch("popular", popular)],
    )
    assert {v.status for v in published} == {"current"}
    served = publisher.recommendations("site", "user", "u\x00evil")
    assert served["article_id"].tolist() == [f"a{NUL_REPLACEMENT}1", "a2"]
    # An exclusion with NUL is bound the same way.
    served = publisher.recommendations("site", "user", "u\x00evil", exclude=["a\x001"])
    assert served["article_id"].tolist() == ["a2"]


@pytest.mark.parametrize("value", ["\x00", "x\x00y"])
def test_pg_text_never_keeps_nul(value: str) -> None:
    from recs_pipeline.adapters.publishing.postgres import pg_text

    assert "\x00" not in pg_text(value)
    assert pg_text("plain") == "plain"


def test_version_documents_with_nul_are_stored(pg_url: str) -> None:
    """A version's params (jsonb) cannot hold NUL either."""
    publisher = PostgresPublisher(pg_url)
    rows = pd.DataFrame(
        {
            "source_entity_id": ["u1", "u1"],
            "rank": [1, 2],
            "recommended_article_id": ["a1", "a2"],
            "score": [0.9, 0.5],
        }
    )
    moment = dt.datetime(2026, 11, 10, 13, tzinfo=dt.UTC)
    [version] = publisher.publish(
        "site", moment, [RecommendationBatch("user", rows, params={"note\x00": "x\x00y"})]
    )
    assert version.status == "current"
    assert version.params == {f"note{NUL_REPLACEMENT}": f"x{NUL_REPLACEMENT}y"}
