"""Every event source against real files written on disk (no mocks of the readers)."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recs_pipeline.adapters.sources import (
    CsvEvents,
    Ga4Events,
    MindBehaviors,
    SnowplowEvents,
    event_source,
)
from recs_pipeline.adapters.sources.base import iter_line_batches, open_decompressed
from recs_pipeline.core.engagement import daily_engagement
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline_tests.servers import Bucket

NOW = pd.Timestamp("2026-12-01", tz="UTC")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def site(events: dict[str, object], **extra: object) -> SiteConfig:
    return SiteConfig.model_validate(
        {"name": "s", "timezone": "UTC", "start_date": "2026-11-01", "events": events, **extra}
    )


def read_all(config: SiteConfig, days: list[dt.date]) -> dict[dt.date, object]:
    return dict(event_source(config).read_days(days, now=NOW))


# ---------------------------------------------------------------------------------------------
# Snowplow


def snowplow_line(event_id: str, **fields: object) -> bytes:
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


def write_hour(root: Path, lines: list[bytes], hour: str = "2026/11/10/15") -> Path:
    folder = root / hour
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.json.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


def test_snowplow_generated_days_account_for_every_line(tmp_path: Path) -> None:
    stats = generate(
        GeneratorConfig(
            start=dt.date(2026, 11, 1),
            days=2,
            users=200,
            articles_per_day=15,
            events_per_day=3000,
            malformed_share=0.02,
            timezone="UTC",
            seed=5,
        ),
        tmp_path / "landing",
    )
    config = site({"format": "snowplow", "location": str(tmp_path / "landing")})
    days = read_all(config, [dt.date(2026, 11, 1), dt.date(2026, 11, 2)])
    total = 0
    for result in days.values():
        total += (
            len(result.events)  # type: ignore[attr-defined]
            + len(result.quarantine)  # type: ignore[attr-defined]
            + result.duplicates  # type: ignore[attr-defined]
            + result.non_article_events  # type: ignore[attr-defined]
        )
        assert result.lines_read > 0  # type: ignore[attr-defined]
    assert total == stats.lines
    assert sum(r.duplicates for r in days.values()) == stats.duplicate_lines  # type: ignore[attr-defined]


def test_snowplow_page_url_is_canonical_and_foreign_hosts_are_not_articles(tmp_path: Path) -> None:
    url = "https://www.news.example.com/politics/budget-123/"
    write_hour(
        tmp_path,
        [
            snowplow_line("a", page_url=f"{url}?utm_source=x#comments"),
            snowplow_line("b", page_url="http://NEWS.example.com//politics/budget-123?page=2"),
            snowplow_line("c", page_url="https://translate.example.net/politics/budget-123"),
            snowplow_line("d", page_url=None, page_urlpath="/politics/budget-123"),
            snowplow_line("e", page_url="https://news.example.com/partner/sponsored-9"),
            snowplow_line("f", page_url="javascript:alert(1)"),
        ],
    )
    config = site(
        {
            "format": "snowplow",
            "location": str(tmp_path),
            "hosts": ["news.example.com"],
            "significant_params": ["page"],
            "excluded_path_patterns": {"sponsored": "^/partner/"},
        }
    )
    result = read_all(config, [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    events = result.events.set_index("event_id")  # type: ignore[attr-defined]
    assert events.loc["a", "path"] == "/politics/budget-123"
    assert events.loc["b", "path"] == "/politics/budget-123?page=2"
    assert events.loc["d", "path"] == "/politics/budget-123"
    assert set(events["article_id"]) == {"123"}
    assert result.non_article_by_reason == {  # type: ignore[attr-defined]
        "foreign_host": 1,
        "sponsored": 1,
        "bad_url": 1,
    }


def test_snowplow_reads_in_batches_without_changing_a_thing(tmp_path: Path) -> None:
    lines = [snowplow_line(f"e{i}", domain_userid=f"u{i % 4}") for i in range(25)]
    lines[7] = b"{broken"
    lines[11] = b""
    path = write_hour(tmp_path, lines)
    with open_decompressed(__import__("pyarrow.fs").fs.LocalFileSystem(), str(path)) as stream:
        batches = list(iter_line_batches(stream, batch_lines=4, chunk_bytes=64))
    assert [len(b) for b in batches][:3] == [4, 4, 4]
    assert sum(len(b) for b in batches) == 25
    source = SnowplowEvents(site({"format": "snowplow", "location": str(tmp_path)}).events, dt.UTC)  # type: ignore[arg-type]
    file = source.list_files()[0]
    parsed = source.parse_file(file)
    assert parsed.lines == 24
    assert parsed.quarantine["line_no"].tolist() == [8]
    assert len(parsed.events) == 23


def test_pseudonymised_user_ids_never_reach_the_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_hour(
        tmp_path,
        [
            snowplow_line("a", domain_userid="reader-42"),
            snowplow_line("b", domain_userid="reader-42", event_name="page_ping"),
            b'{"event_id": "c", "domain_userid": "reader-42"',
        ],
    )
    events = {
        "format": "snowplow",
        "location": str(tmp_path),
        "pseudonymise_salt_env": "TEST_SITE_SALT",
    }
    monkeypatch.delenv("TEST_SITE_SALT", raising=False)
    with pytest.raises(RuntimeError, match="TEST_SITE_SALT"):
        read_all(site(events), [dt.date(2026, 11, 10)])
    monkeypatch.setenv("TEST_SITE_SALT", "a-long-secret-salt-for-tests")
    first = read_all(site(events), [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    frames = pd.concat([first.events.astype(str), first.quarantine.astype(str)])  # type: ignore[attr-defined]
    assert not frames.apply(lambda col: col.str.contains("reader-42")).any().any()
    assert first.events["user_id"].nunique() == 1  # type: ignore[attr-defined]
    again = read_all(site(events), [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    assert again.events["user_id"].tolist() == first.events["user_id"].tolist()  # type: ignore[attr-defined]
    monkeypatch.setenv("TEST_SITE_SALT", "another-long-secret-salt")
    other = read_all(site(events), [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    assert other.events["user_id"].iloc[0] != first.events["user_id"].iloc[0]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# GA4


def ga4_row(name: str, micros: int, user: str = "p1", **params: object) -> dict[str, object]:
    event_params = []
    for key, value in params.items():
        field = "int_value" if isinstance(value, int) else "string_value"
        event_params.append({"key": key, "value": {field: value}})
    return {
        "event_date": "20261110",
        "event_timestamp": str(micros),
        "event_name": name,
        "user_pseudo_id": user,
        "event_params": event_params,
    }


T0 = int(pd.Timestamp("2026-11-10 12:00", tz="UTC").value // 1000)
PAGE = "https://news.example.com/politics/budget-123?utm_medium=social"


def test_ga4_json_lines_views_engagement_and_ignored_events(tmp_path: Path) -> None:
    rows = [
        ga4_row("page_view", T0, page_location=PAGE, page_referrer="https://t.co/x"),
        ga4_row(
            "user_engagement", T0 + 40_000_000, page_location=PAGE, engagement_time_msec=35_000
        ),
        ga4_row("scroll", T0 + 50_000_000, page_location=PAGE, engagement_time_msec=5_000),
        ga4_row("session_start", T0, page_location=PAGE),
        ga4_row("page_view", T0, page_location=PAGE, page_referrer="https://t.co/x"),  # re-sent
    ]
    lines = [orjson.dumps(row) for row in rows]
    lines += [
        b'{"event_timestamp": "x1", "event_name": "page_view", "user_pseudo_id": "p2"}',
        b'{"event_name": "page_view", "user_pseudo_id": "p2"}',
        orjson.dumps(ga4_row("page_view", T0, user="p3")),  # a view without page_location
        b"not json",
    ]
    (tmp_path / "events_20261110.json.gz").write_bytes(gzip.compress(b"\n".join(lines)))
    config = site(
        {"format": "ga4", "location": str(tmp_path), "hosts": ["news.example.com"]},
    )
    result = read_all(config, [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    events = result.events  # type: ignore[attr-defined]
    assert sorted(events["event_name"]) == ["engagement", "engagement", "page_view"]
    assert set(events["path"]) == {"/politics/budget-123"}
    assert result.duplicates == 1  # type: ignore[attr-defined]
    assert result.ignored_events == 1  # type: ignore[attr-defined]
    assert result.quarantined_by_reason == {  # type: ignore[attr-defined]
        "wrong_type": 1,
        "missing_field": 2,
        "invalid_json": 1,
    }
    assert result.lines_read == 9  # type: ignore[attr-defined]
    engagement = daily_engagement(events, "2026-11-10", NOW, heartbeat_seconds=10)
    assert engagement["dwell_seconds"].tolist() == [40.0]
    assert engagement["views"].tolist() == [1]


def ga4_parquet(path: Path, rows: list[dict[str, object]]) -> None:
    value = pa.struct([("string_value", pa.string()), ("int_value", pa.int64())])
    param = pa.struct([("key", pa.string()), ("value", value)])
    table = pa.table(
        {
            "event_timestamp": pa.array([int(str(r["event_timestamp"])) for r in rows], pa.int64()),
            "event_name": pa.array([r["event_name"] for r in rows], pa.string()),
            "user_pseudo_id": pa.array([r["user_pseudo_id"] for r in rows], pa.string()),
            "event_params": pa.array(
                [
                    [
                        {
                            "key": p["key"],
                            "value": {**{"string_value": None, "int_value": None}, **p["value"]},
                        }  # type: ignore[index,dict-item]
                        for p in r["event_params"]  # type: ignore[attr-defined]
                    ]
                    for r in rows
                ],
                pa.list_(param),
            ),
        }
    )
    pq.write_table(table, path)


def test_ga4_parquet_daily_table_supersedes_intraday_and_schema_is_checked(tmp_path: Path) -> None:
    day = [
        ga4_row("page_view", T0, page_location=PAGE),
        ga4_row("user_engagement", T0 + 10**6, page_location=PAGE, engagement_time_msec=12_000),
        ga4_row("first_visit", T0 + 2 * 10**6, page_location=PAGE),
    ]
    (tmp_path / "events_20261110").mkdir()
    ga4_parquet(tmp_path / "events_20261110" / "000000000000.parquet", day)
    ga4_parquet(tmp_path / "events_intraday_20261110.parquet", day[:1])
    ga4_parquet(
        tmp_path / "events_intraday_20261111.parquet",
        [ga4_row("page_view", T0 + 86_400_000_000, page_location=PAGE)],
    )
    pq.write_table(
        pa.table({"event_timestamp": ["not", "ga4"]}), tmp_path / "events_20261112.parquet"
    )
    config = site({"format": "ga4", "location": str(tmp_path)})
    source = event_source(config)
    assert isinstance(source, Ga4Events)
    assert [Path(f.path).name for f in source.files_for_day(dt.date(2026, 11, 10))] == [
        "000000000000.parquet"
    ]
    days = read_all(config, [dt.date(2026, 11, d) for d in (10, 11, 12)])
    tenth = days[dt.date(2026, 11, 10)]
    assert tenth.events["event_name"].tolist() == ["page_view", "engagement"]  # type: ignore[attr-defined]
    assert tenth.events["engaged_ms"].tolist() == [0, 12_000]  # type: ignore[attr-defined]
    assert tenth.ignored_events == 1  # type: ignore[attr-defined]
    assert len(days[dt.date(2026, 11, 11)].events) == 1  # type: ignore[attr-defined]
    twelfth = days[dt.date(2026, 11, 12)]
    assert twelfth.quarantine["reason"].tolist() == ["schema_mismatch"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Delimited files


def csv_site(tmp_path: Path, **events: object) -> SiteConfig:
    base: dict[str, object] = {
        "format": "csv",
        "location": str(tmp_path),
        "files": "*",
        "columns": {"user_id": "User ID", "article_id": "Article", "timestamp": "When"},
        "timestamp_unit": "ms",
    }
    return site(base | events)


MS = int(pd.Timestamp("2026-11-10 12:00", tz="UTC").value // 1_000_000)


@pytest.mark.parametrize(
    "name,compress",
    [
        ("clicks.csv", lambda b: b),
        ("clicks.csv.gz", gzip.compress),
        ("clicks.csv.bz2", bz2.compress),
        ("clicks.bin", gzip.compress),  # detected from its bytes, not its name
    ],
)
def test_csv_compression_and_a_lenient_header(tmp_path: Path, name: str, compress: object) -> None:
    text = (
        "\ufeff user id ,ARTICLE, when ,extra\n"
        f"1,10,{MS},a\n"
        f"2,11,{MS + 1000},b\n"
        "3,12\n"  # too few fields
        f"4,,{MS},c\n"  # missing article
        f"5,13,{MS + 2000},d,e,f\n"  # too many fields
    )
    (tmp_path / name).write_bytes(compress(text.encode()))  # type: ignore[operator]
    result = read_all(csv_site(tmp_path), [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    assert result.events["user_id"].tolist() == ["1", "2"]  # type: ignore[attr-defined]
    assert result.events["article_id"].tolist() == ["10", "11"]  # type: ignore[attr-defined]
    assert sorted(result.quarantined_by_reason.items()) == [  # type: ignore[attr-defined]
        ("malformed_row", 2),
        ("missing_field", 1),
    ]
    assert result.lines_read == 5  # type: ignore[attr-defined]


def test_csv_without_header_local_text_times_tabs_and_bad_bytes(tmp_path: Path) -> None:
    rows = [
        b"# exported 2026-11-11",
        b"u1\t/politics/budget-123\t11/10/2026 09:00:00 AM",
        b"u2\t/politics/budget-124\t11/10/2026 11:30:00 PM",  # next day in UTC
        b"u\xff\t/politics/budget-125\t11/10/2026 09:00:00 AM",
        b"u3\t/politics/budget-126\t13/45/2026 09:00:00 AM",
    ]
    (tmp_path / "export.tsv.gz").write_bytes(gzip.compress(b"\n".join(rows)))
    config = site(
        {
            "format": "csv",
            "location": str(tmp_path),
            "files": "*.tsv.gz",
            "delimiter": "\t",
            "header": False,
            "skip_rows": 1,
            "column_names": ["visitor", "page", "time"],
            "columns": {"user_id": "visitor", "path": "page", "timestamp": "time"},
            "timestamp_unit": "iso",
            "timestamp_format": "%m/%d/%Y %I:%M:%S %p",
            "timestamp_timezone": "America/Sao_Paulo",
        }
    )
    days = read_all(config, [dt.date(2026, 11, 10), dt.date(2026, 11, 11)])
    tenth, eleventh = days[dt.date(2026, 11, 10)], days[dt.date(2026, 11, 11)]
    assert tenth.events["ts"].tolist() == [pd.Timestamp("2026-11-10 12:00", tz="UTC")]  # type: ignore[attr-defined]
    assert eleventh.events["article_id"].tolist() == ["124"]  # type: ignore[attr-defined]
    assert dict(zip(tenth.quarantine["line_no"], tenth.quarantine["reason"], strict=True)) == {  # type: ignore[attr-defined]
        4: "not_utf8",
        5: "bad_timestamp",
    }


def test_csv_file_without_the_mapped_columns_is_quarantined_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(f"User ID,Article,When\n1,10,{MS}\n")
    (tmp_path / "b.csv").write_text("something,else\n1,2\n")
    result = read_all(csv_site(tmp_path), [dt.date(2026, 11, 1), dt.date(2026, 11, 10)])
    assert len(result[dt.date(2026, 11, 10)].events) == 1  # type: ignore[attr-defined]
    assert result[dt.date(2026, 11, 1)].quarantined_by_reason == {"schema_mismatch": 1}  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# MIND


def test_mind_clicks_and_histories(tmp_path: Path) -> None:
    rows = [
        "1\tU1\t11/12/2019 2:14:46 PM\tN1 N2\tN10-1 N11-0 N12-1",
        "2\tU1\t11/12/2019 3:00:00 PM\tN1 N2\tN13-0 N10-1",  # history not repeated
        "3\tU2\t11/13/2019 9:00:00 AM\t\tN20-1",
        "4\tU3\tyesterday\tN1\tN21-1",
        "5\tU4\t11/13/2019 9:00:00 AM\tN1\tN21-maybe",
        "6\tU5\t11/13/2019 9:00:00 AM",  # too few fields
    ]
    (tmp_path / "behaviors.tsv").write_text("\n".join(rows) + "\n")
    config = SiteConfig.model_validate(
        {
            "name": "mind",
            "timezone": "UTC",
            "start_date": "2019-11-09",
            "events": {"format": "mind", "location": str(tmp_path)},
        }
    )
    source = event_source(config)
    assert isinstance(source, MindBehaviors)
    days = dict(source.read_days([dt.date(2019, 11, 12), dt.date(2019, 11, 13)], now=NOW))
    twelfth = days[dt.date(2019, 11, 12)]
    # N10 clicked in two impressions: two clicks; the history of U1 once (first impression).
    assert sorted(twelfth.events["article_id"]) == ["N1", "N10", "N10", "N12", "N2"]
    assert twelfth.duplicates == 0
    assert twelfth.quarantined_by_reason == {
        "bad_timestamp": 1,
        "wrong_type": 1,
        "malformed_row": 1,
    }
    assert days[dt.date(2019, 11, 13)].events["article_id"].tolist() == ["N20"]


@pytest.mark.skipif(
    not (SHARED / "mind" / "behaviors.tsv").exists(),
    reason=f"optional: the MIND sample is not at {SHARED / 'mind'}",
)
def test_the_real_mind_sample_reads_without_quarantine() -> None:
    config = SiteConfig.model_validate(
        {
            "name": "mind",
            "timezone": "UTC",
            "start_date": "2019-11-09",
            "events": {"format": "mind", "location": str(SHARED / "mind"), "mind_history": False},
        }
    )
    source = event_source(config)
    days = [dt.date(2019, 11, 9) + dt.timedelta(days=i) for i in range(7)]
    results = dict(source.read_days(days, now=NOW))
    clicks = sum(len(r.events) for r in results.values())
    assert sum(r.lines_read for r in results.values()) == 5000
    assert sum(len(r.quarantine) for r in results.values()) == 0
    assert clicks >= 5000  # every impression has at least one click


@pytest.mark.skipif(
    not (SHARED / "globo" / "clicks").exists(),
    reason=f"optional: the Globo clicks are not at {SHARED / 'globo'}",
)
def test_the_real_globo_files_load_by_configuration() -> None:
    config = SiteConfig.model_validate(
        {
            "name": "globo",
            "timezone": "America/Sao_Paulo",
            "start_date": "2017-10-01",
            "events": {
                "format": "csv",
                "location": str(SHARED / "globo" / "clicks"),
                "files": "clicks_hour_00*.csv.gz",
                "columns": {
                    "user_id": "user_id",
                    "article_id": "click_article_id",
                    "timestamp": "click_timestamp",
                },
                "timestamp_unit": "ms",
            },
        }
    )
    source = event_source(config)
    assert isinstance(source, CsvEvents)
    result = dict(source.read_days([dt.date(2017, 10, 1)], now=NOW))[dt.date(2017, 10, 1)]
    assert len(result.events) > 1000
    assert result.quarantined_by_reason == {}


def test_sources_read_landing_files_from_s3(s3_bucket: Bucket) -> None:
    """``location: s3://...`` through moto's S3 server: listing, streaming gzip, GA4 Parquet."""
    client = s3_bucket.endpoint.client()
    body = gzip.compress(b"\n".join([snowplow_line("a"), b"{broken", snowplow_line("b")]))
    client.put_object(  # type: ignore[attr-defined]
        Bucket=s3_bucket.name, Key="enriched/2026/11/10/15/part-0.json.gz", Body=body
    )
    snowplow = site({"format": "snowplow", "location": f"s3://{s3_bucket.name}/enriched"})
    source = event_source(snowplow)
    assert [f.path.rsplit("/", 1)[-1] for f in source.list_files()] == ["part-0.json.gz"]
    result = read_all(snowplow, [dt.date(2026, 11, 10)])[dt.date(2026, 11, 10)]
    assert sorted(result.events["event_id"]) == ["a", "b"]  # type: ignore[attr-defined]
    assert result.quarantined_by_reason == {"invalid_json": 1}  # type: ignore[attr-defined]


def test_landing_file_paths_stay_stable_for_the_sensor(tmp_path: Path) -> None:
    write_hour(tmp_path, [snowplow_line("a")])
    config = site({"format": "snowplow", "location": str(tmp_path)})
    files = event_source(config).list_files()
    assert len(files) == 1 and files[0].path.startswith(tmp_path.as_posix())
    assert event_source(config).days_of(files[0]) == {dt.date(2026, 11, 10)}
