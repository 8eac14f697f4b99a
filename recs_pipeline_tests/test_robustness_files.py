"""Issue 12, items 2, 3, 4, 6 and 11: what a flaky landing area delivers costs that file or that
line, named, and nothing else.

- an unreadable file (truncated gzip, gzip magic + garbage, a .parquet that is not Parquet) is
  quarantined whole with its path and size; every other file's events are kept;
- a file still being written is left for the next run;
- the landing sensor never wedges on such a file;
- a stray quote costs one line, and the counts explain every line read;
- files are tracked by identity, late files with old modification times included;
- an oversize line is cut while it is read, in bounded memory.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import random
import time
import tracemalloc
from pathlib import Path

import dagster as dg
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recs_pipeline.adapters.sources import LandingFile, event_source
from recs_pipeline.adapters.sources.base import iter_line_batches
from recs_pipeline.assets.ingestion import SourceDays, build_ingestion_assets
from recs_pipeline.automation import new_landing_files
from recs_pipeline.core.events import DayEvents, quarantine_frame
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.definitions import build_definitions
from recs_pipeline.resources import Clock, LakeIOManager, LakeResource

NOW = pd.Timestamp("2026-12-01", tz="UTC")
DAY = dt.date(2026, 11, 10)
OLD = 1_790_000_000  # 2026-09-21: long settled


def settle(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (OLD, OLD))


def snowplow_line(event_id: str, minute: int = 12, hour: int = 15) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "collector_tstamp": f"2026-11-10 {hour:02d}:{minute:02d}:00.000",
            "domain_userid": f"u{event_id}",
            "event_name": "page_view",
            "page_urlpath": f"/politics/story-{100 + minute}",
            "useragent": "Mozilla/5.0",
        }
    )


def snowplow_site(landing: Path) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "name": "s",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {"format": "snowplow", "location": str(landing)},
        }
    )


def csv_site(landing: Path, name: str = "c") -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "name": name,
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


def clicks(n: int, first: int = 0) -> list[str]:
    base = 1_794_268_800_000 + 15 * 3_600_000  # 2026-11-10 15:00 UTC, in ms
    return [f"u{i},{1000 + i % 7},{base + i * 1000}" for i in range(first, first + n)]


def one_day(config: SiteConfig) -> tuple[DayEvents, object]:
    source = event_source(config)
    [(_, result)] = list(source.read_days([DAY], now=NOW))
    return result, source


# ---------------------------------------------------------------------------------------------
# Items 2 and 3: unreadable files


def test_unreadable_snowplow_files_are_quarantined_whole_and_the_rest_kept(tmp_path: Path) -> None:
    good = [snowplow_line(f"g{i}", minute=i, hour=14 if i < 10 else 17) for i in range(20)]
    folders = {hour: tmp_path / f"2026/11/10/{hour:02d}" for hour in (14, 15, 16, 17)}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (folders[14] / "a.json.gz").write_bytes(gzip.compress(b"\n".join(good[:10])))
    whole = gzip.compress(b"\n".join(snowplow_line(f"t{i}", hour=15) for i in range(5000)))
    truncated = whole[: len(whole) // 2]
    (folders[15] / "truncated.json.gz").write_bytes(truncated)
    garbage = b"\x1f\x8b" + random.Random(1).randbytes(3000)
    (folders[16] / "garbage.json.gz").write_bytes(garbage)
    (folders[17] / "b.json.gz").write_bytes(gzip.compress(b"\n".join(good[10:])))
    settle(*tmp_path.rglob("*.json.gz"))

    result, source = one_day(snowplow_site(tmp_path))
    assert sorted(result.events["event_id"]) == sorted(f"g{i}" for i in range(20))
    whole_files = result.quarantine[result.quarantine["reason"] == "unreadable_file"]
    assert sorted(whole_files["source_file"]) == [
        "2026/11/10/15/truncated.json.gz",
        "2026/11/10/16/garbage.json.gz",
    ]
    raw = dict(zip(whole_files["source_file"], whole_files["raw"], strict=True))
    assert raw["2026/11/10/15/truncated.json.gz"].startswith(f"{len(truncated)} bytes")
    assert "Truncated" in raw["2026/11/10/15/truncated.json.gz"]
    assert raw["2026/11/10/16/garbage.json.gz"].startswith(f"{len(garbage)} bytes")
    assert [name for name, _, _ in source.problems.unreadable] == sorted(raw)  # type: ignore[attr-defined]
    assert result.unaccounted() == 0


def test_a_ga4_parquet_that_is_not_parquet_costs_only_itself(tmp_path: Path) -> None:
    table = tmp_path / "events_20261110"
    table.mkdir()
    rows = [
        {
            "event_timestamp": 1_794_322_800_000_000 + i,
            "event_name": "page_view",
            "user_pseudo_id": f"p{i}",
            "event_params": [
                {"key": "page_location", "value": {"string_value": f"https://x.example/a-{i}"}}
            ],
        }
        for i in range(30)
    ]
    pq.write_table(pa.Table.from_pylist(rows), table / "000000000000.parquet")
    (table / "000000000001.parquet").write_bytes(b"PAR1 but not really" * 20)
    (table / "000000000002.parquet").write_bytes(b"")
    settle(*table.iterdir())
    config = SiteConfig.model_validate(
        {
            "name": "g",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {"format": "ga4", "location": str(tmp_path)},
        }
    )
    result, _ = one_day(config)
    assert len(result.events) == 30
    assert sorted(result.quarantine["source_file"]) == [
        "events_20261110/000000000001.parquet",
        "events_20261110/000000000002.parquet",
    ]
    assert set(result.quarantine["reason"]) == {"unreadable_file"}
    assert result.unaccounted() == 0


def test_unreadable_csv_files_and_oversize_rows_cost_only_themselves(tmp_path: Path) -> None:
    header = "user_id,click_article_id,click_timestamp"
    (tmp_path / "good.csv").write_text("\n".join([header, *clicks(50)]) + "\n")
    (tmp_path / "header_only.csv").write_text(header)  # no newline at all: no rows
    whole = gzip.compress(("\n".join([header, *clicks(20000, 100)]) + "\n").encode())
    (tmp_path / "truncated.csv.gz").write_bytes(whole[: len(whole) // 3])
    long_row = "u9,1," + "9" * (5 << 20)  # longer than the 4 MiB read block of earlier readers
    (tmp_path / "long.csv").write_text(
        "\n".join([header, *clicks(3, 900), long_row, *clicks(2, 950)])
    )
    settle(*tmp_path.iterdir())

    result, source = one_day(csv_site(tmp_path))
    users = set(result.events["user_id"])
    assert {f"u{i}" for i in range(50)} | {"u900", "u901", "u902", "u950", "u951"} == users
    reasons = {(row.source_file, row.reason, row.line_no) for row in result.quarantine.itertuples()}
    assert reasons == {("long.csv", "oversized", 5)}
    assert [name for name, _, _ in source.problems.unreadable] == ["truncated.csv.gz"]  # type: ignore[attr-defined]
    assert result.lines_read == 50 + 6
    assert result.unaccounted() == 0
    # A click log without readable rows has no day of its own: the day it was last modified
    # (not before the site's first day) quarantines it, once.
    [(_, first)] = list(event_source(csv_site(tmp_path)).read_days([dt.date(2026, 11, 1)], now=NOW))
    assert first.quarantine[["source_file", "reason"]].values.tolist() == [
        ["truncated.csv.gz", "unreadable_file"]
    ]
    assert first.quarantine["raw"].iloc[0].startswith(f"{len(whole) // 3} bytes")
    assert first.unaccounted() == 0


def test_a_file_still_being_written_is_left_for_the_next_run(tmp_path: Path) -> None:
    folder = tmp_path / "2026/11/10/15"
    folder.mkdir(parents=True)
    whole = gzip.compress(b"\n".join(snowplow_line(f"e{i}", minute=i % 60) for i in range(3000)))
    writing = folder / "writing.json.gz"
    writing.write_bytes(whole[: len(whole) // 2])  # just written: mtime is now
    done = folder / "done.json.gz"
    done.write_bytes(gzip.compress(snowplow_line("d1")))
    settle(done)

    result, source = one_day(snowplow_site(tmp_path))
    assert result.events["event_id"].tolist() == ["d1"]
    assert result.quarantine.empty
    assert source.problems.in_flight == ["2026/11/10/15/writing.json.gz"]  # type: ignore[attr-defined]

    # A file that changes between the listing and the read is left too.
    source = event_source(snowplow_site(tmp_path))
    source.listing()  # type: ignore[attr-defined]
    writing.write_bytes(whole)
    [(_, result)] = list(source.read_days([DAY], now=NOW))
    assert result.events["event_id"].tolist() == ["d1"]
    assert source.problems.in_flight == ["2026/11/10/15/writing.json.gz"]  # type: ignore[attr-defined]

    # Finished (and settled), the next run reads all of it.
    settle(writing)
    result, _ = one_day(snowplow_site(tmp_path))
    assert len(result.events) == 3001 - 0 and result.unaccounted() == 0


@pytest.mark.parametrize("fmt", ["csv", "mind"])
def test_the_landing_sensor_does_not_wedge_on_an_unreadable_file(tmp_path: Path, fmt: str) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    if fmt == "csv":
        site = csv_site(landing)
        bad = landing / "bad.csv.gz"
        later = landing / "later.csv"
        later_text = "user_id,click_article_id,click_timestamp\n" + "\n".join(clicks(3)) + "\n"
    else:
        site = SiteConfig.model_validate(
            {
                "name": "c",
                "timezone": "UTC",
                "start_date": "2026-11-01",
                "events": {"format": "mind", "location": str(landing)},
            }
        )
        bad = landing / "behaviors_bad.tsv.gz"
        later = landing / "behaviors_later.tsv"
        later_text = "1\tU1\t11/10/2026 3:00:00 PM\tN1\tN2-1\n"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + random.Random(2).randbytes(500))
    settle(bad)
    definitions = build_definitions([site], str(tmp_path / "lake"), "sqlite:///:memory:")
    sensor = definitions.get_sensor_def("c__landing_files")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=definitions)
        )
        # The unreadable file is requested on the day it was last modified (it quarantines it).
        assert [r.partition_key for r in first.run_requests] == ["2026-11-01"]
        later.write_text(later_text)
        settle(later)
        second = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=definitions)
        )
        assert [r.partition_key for r in second.run_requests] == ["2026-11-10"]


# ---------------------------------------------------------------------------------------------
# Item 4: a stray quote, and exact line accounting


def test_a_stray_quote_costs_one_line(tmp_path: Path) -> None:
    header = "user_id,click_article_id,click_timestamp"
    rows = clicks(20000)
    rows[10] = 'u"10,1000,1794322810000'  # a stray quote in an unquoted field
    rows[500] = '"u500,1001,1794323300000'  # an unclosed quoted field
    rows[700] = 'u700,"1000,1794323500000"'  # a quoted comma: two fields, not three
    rows.insert(900, "")  # an empty line is no line
    rows[1500] = "u1499 only one field"
    (tmp_path / "clicks.csv").write_text("\n".join([header, *rows]) + "\n")
    settle(tmp_path / "clicks.csv")

    result, _ = one_day(csv_site(tmp_path))
    malformed = result.quarantine.loc[result.quarantine["reason"] == "malformed_row", "line_no"]
    # Line numbers after the empty line are still the file's own (1502).
    assert sorted(malformed) == [12, 502, 702, 1502]
    assert len(result.events) == 20000 - 4
    assert result.lines_read == 20000
    assert result.unaccounted() == 0


def test_the_ingest_step_checks_and_reports_line_accounting(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    header = "user_id,click_article_id,click_timestamp"
    rows = [*clicks(300), 'u"x,1,1794322800000', clicks(1)[0]]  # a stray quote and a duplicate
    (landing / "a.csv").write_text("\n".join([header, *rows]) + "\n")
    (landing / "b.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    settle(*landing.iterdir())
    site = csv_site(landing, name="acct")
    lake_url = str(tmp_path / "lake")
    resources = {
        "lake_io_manager": LakeIOManager(url=lake_url),
        "lake": LakeResource(url=lake_url),
        "clock": Clock(),
    }
    keys = [dg.AssetKey(["acct", "raw_events"]), dg.AssetKey(["acct", "quarantined_events"])]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            build_ingestion_assets(site),
            resources=resources,
            instance=instance,
            partition_key=DAY.isoformat(),
            selection=keys,
        )
        meta = {
            event.step_materialization_data.materialization.asset_key.path[-1]: dict(
                event.step_materialization_data.materialization.metadata
            )
            for event in result.get_asset_materialization_events()
        }
    events = meta["raw_events"]
    value = {name: getattr(v, "value", None) for name, v in events.items()}
    assert value["lines_read"] == 302  # b.csv.gz is quarantined by its own (first) day
    assert value["events"] == 300 and value["duplicates"] == 1 and value["quarantined"] == 1
    assert value["lines_read"] == value["events"] + value["duplicates"] + value["quarantined"]
    assert value["lines_unaccounted"] == 0
    assert value["unreadable_files"] == 1
    assert "b.csv.gz" in str(meta["quarantined_events"]["unreadable"].value)

    # A day whose counts do not add up fails the step rather than reporting success.
    broken = DayEvents(
        events=pd.DataFrame({"event_name": [], "user_id": [], "article_id": []}),
        quarantine=quarantine_frame([]),
        lines_read=20000,
    )
    days = SourceDays(iter([(DAY, broken)]), log=lambda _: None)
    with pytest.raises(RuntimeError, match="20,000 lines unaccounted"):
        days.events(DAY.isoformat())


# ---------------------------------------------------------------------------------------------
# Item 6: files tracked by identity, files outside the layout counted


def test_late_files_with_old_mtimes_and_rewrites_are_seen() -> None:
    now = time.time()
    listed = [LandingFile("2026/11/10/15/a.json.gz", 10, now - 3600)]
    fresh, cursor = new_landing_files(listed, None)
    assert [f.path for f in fresh] == ["2026/11/10/15/a.json.gz"]
    # cp -p / rsync -t: a file lands with an mtime older than everything seen.
    late = [*listed, LandingFile("2026/11/09/02/late.json.gz", 10, now - 86400 * 30)]
    fresh, cursor = new_landing_files(late, cursor)
    assert [f.path for f in fresh] == ["2026/11/09/02/late.json.gz"]
    # Rewritten in place (same path, new size): a new delivery.
    rewritten = [LandingFile("2026/11/10/15/a.json.gz", 20, now - 3600), late[1]]
    assert [f.path for f in new_landing_files(rewritten, cursor)[0]] == ["2026/11/10/15/a.json.gz"]
    # Still being written: reported once it has settled, not before.
    young = [*late, LandingFile("2026/11/10/16/b.json.gz", 5, now - 1)]
    fresh, cursor = new_landing_files(young, cursor, now=now)
    assert fresh == []
    fresh, _ = new_landing_files(young, cursor, now=now + 120)
    assert [f.path for f in fresh] == ["2026/11/10/16/b.json.gz"]


def test_files_outside_the_hour_layout_are_counted(tmp_path: Path) -> None:
    folder = tmp_path / "2026/11/10/15"
    folder.mkdir(parents=True)
    (folder / "a.json.gz").write_bytes(gzip.compress(snowplow_line("a")))
    (tmp_path / "2026/11/10/stray.json.gz").write_bytes(gzip.compress(snowplow_line("b")))
    (tmp_path / "loose.json.gz").write_bytes(gzip.compress(snowplow_line("c")))
    settle(*tmp_path.rglob("*.json.gz"))
    result, source = one_day(snowplow_site(tmp_path))
    assert result.events["event_id"].tolist() == ["a"]
    assert source.problems.outside_layout == ["2026/11/10/stray.json.gz", "loose.json.gz"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Item 11: oversize lines in bounded memory


class Endless:
    """A stream of one ``size``-byte line without a newline, then a short line."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.tail = b"\n" + snowplow_line("after")

    def read(self, n: int) -> bytes:
        if self.left > 0:
            take = min(n, self.left)
            self.left -= take
            return b"x" * take
        tail, self.tail = self.tail, b""
        return tail


def test_an_oversize_line_is_cut_while_read_in_bounded_memory() -> None:
    size = 64 << 20  # 64 MiB without a newline
    chunk = 1 << 20
    tracemalloc.start()
    try:
        batches = list(
            iter_line_batches(Endless(size), chunk_bytes=chunk, max_line_bytes=4096)  # type: ignore[arg-type]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines = [line for batch in batches for line in batch]
    assert len(lines) == 2
    assert len(lines[0]) == 4097  # cut: the parsers quarantine it as oversized
    assert lines[1] == snowplow_line("after")
    assert peak < 4 * chunk, f"peak {peak / 2**20:.1f} MiB while reading a {size >> 20} MiB line"


def test_oversize_lines_are_quarantined_with_a_configured_limit(tmp_path: Path) -> None:
    folder = tmp_path / "2026/11/10/15"
    folder.mkdir(parents=True)
    huge = b'{"event_id": "huge", "pad": "' + b"y" * (3 << 20) + b'"}'
    body = b"\n".join([snowplow_line("a"), huge, snowplow_line("b", minute=13)])
    (folder / "a.json.gz").write_bytes(gzip.compress(body))
    settle(folder / "a.json.gz")
    source = event_source(snowplow_site(tmp_path))
    source.max_line_bytes = 8192  # type: ignore[attr-defined]
    [(_, result)] = list(source.read_days([DAY], now=NOW))
    assert sorted(result.events["event_id"]) == ["a", "b"]
    assert result.quarantine[["reason", "line_no"]].values.tolist() == [["oversized", 2]]
    assert len(result.quarantine["raw"].iloc[0]) <= 2000
    assert result.unaccounted() == 0


def test_a_listing_with_milliseconds_is_not_a_change(tmp_path: Path) -> None:
    """MinIO lists objects with millisecond times and answers HEAD with whole seconds: the same
    object must not look as if it were still being written (it would never be read)."""
    folder = tmp_path / "2026/11/10/15"
    folder.mkdir(parents=True)
    path = folder / "a.json.gz"
    path.write_bytes(gzip.compress(snowplow_line("a")))
    settle(path)
    source = event_source(snowplow_site(tmp_path))
    size = path.stat().st_size
    assert not source.changed(LandingFile(str(path), size, OLD + 0.456))  # type: ignore[attr-defined]
    assert source.changed(LandingFile(str(path), size, OLD + 1.0))  # type: ignore[attr-defined]
    assert source.changed(LandingFile(str(path), size + 1, OLD))  # type: ignore[attr-defined]


def test_a_storage_outage_fails_the_run_instead_of_quarantining_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An S3 endpoint that goes away mid-run says nothing about the files: the day fails (and is
    retried) rather than quarantining good files as unreadable (a guard on the quarantine of
    unreadable files, which must not swallow storage errors)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from recs_pipeline_tests.servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="outage")
        client.put_object(
            Bucket="outage",
            Key="l/2026/11/10/15/a.json.gz",
            Body=gzip.compress(snowplow_line("a")),
        )
        source = event_source(
            snowplow_site(Path("/unused")).model_copy(
                update={
                    "events": snowplow_site(Path("/unused")).events.model_copy(
                        update={"location": "s3://outage/l"}
                    )
                }
            )
        )
        assert len(source.listing()) == 1  # type: ignore[attr-defined]
    finally:
        server.stop()
    with pytest.raises(OSError, match="AWS Error"):
        list(source.read_days([DAY], now=NOW))
    assert source.problems.unreadable == []  # type: ignore[attr-defined]


def test_each_day_of_a_range_run_carries_its_own_line_accounting(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    header = "user_id,click_article_id,click_timestamp"
    second = [  # the next day, same hour
        f"{user},{article},{int(ts) + 86_400_000}"
        for user, article, ts in (row.split(",") for row in clicks(5, 500))
    ]
    rows = [*clicks(20), 'u"x,1,1794322800000', *second]
    (landing / "a.csv").write_text("\n".join([header, *rows]) + "\n")
    settle(landing / "a.csv")
    site = csv_site(landing, name="perday")
    lake_url = str(tmp_path / "lake")
    resources = {
        "lake_io_manager": LakeIOManager(url=lake_url),
        "lake": LakeResource(url=lake_url),
        "clock": Clock(),
    }
    days = ["2026-11-10", "2026-11-11"]
    tags = {
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1],
    }
    keys = [dg.AssetKey(["perday", "raw_events"]), dg.AssetKey(["perday", "quarantined_events"])]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            build_ingestion_assets(site),
            resources=resources,
            instance=instance,
            tags=tags,
            selection=keys,
        )
        assert result.success
        found: dict[tuple[str, str | None], dict[str, object]] = {}
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            found[(materialization.asset_key.path[-1], materialization.partition)] = {
                name: getattr(value, "value", None)
                for name, value in materialization.metadata.items()
            }
    first, later = found[("raw_events", days[0])], found[("raw_events", days[1])]
    # The file's home day (its first event's) reads its lines; the next day gets its events.
    assert first["lines_read"] == 26 and first["events"] == 20 and first["quarantined"] == 1
    assert first["other_days_events"] == 5
    assert later["lines_read"] == 0 and later["events"] == 5
    assert later["events_from_other_files"] == 5
    for numbers in (first, later):
        assert numbers["lines_unaccounted"] == 0
    assert found[("quarantined_events", days[0])]["reason_malformed_row"] == 1
    assert found[("quarantined_events", days[1])]["dagster/row_count"] == 0


def test_an_unreadable_ga4_daily_shard_is_filled_in_from_the_intraday_table(
    tmp_path: Path,
) -> None:
    def row(i: int) -> bytes:
        return orjson.dumps(
            {
                "event_timestamp": str(1_794_322_800_000_000 + i * 1_000_000),
                "event_name": "page_view",
                "user_pseudo_id": f"p{i}",
                "event_params": [
                    {"key": "page_location", "value": {"string_value": f"https://x.example/a-{i}"}}
                ],
            }
        )

    daily = tmp_path / "events_20261110"
    daily.mkdir()
    (daily / "000000000000.json.gz").write_bytes(gzip.compress(b"\n".join(map(row, range(10)))))
    whole = gzip.compress(b"\n".join(row(i) for i in range(10, 20)))
    (daily / "000000000001.json.gz").write_bytes(whole[: len(whole) // 2])  # cut short
    intraday = tmp_path / "events_intraday_20261110.json.gz"
    intraday.write_bytes(gzip.compress(b"\n".join(map(row, range(20)))))
    settle(*daily.iterdir(), intraday)
    config = SiteConfig.model_validate(
        {
            "name": "g",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {"format": "ga4", "location": str(tmp_path)},
        }
    )
    result, _ = one_day(config)
    assert sorted(result.events["user_id"]) == sorted(f"p{i}" for i in range(20))
    assert result.duplicates == 10  # the readable shard's rows, again in the intraday table
    assert result.quarantine["source_file"].tolist() == ["events_20261110/000000000001.json.gz"]
    assert result.unaccounted() == 0

    # With every daily shard readable the intraday table is not read at all.
    (daily / "000000000001.json.gz").write_bytes(whole)
    settle(*daily.iterdir())
    result, _ = one_day(config)
    assert len(result.events) == 20 and result.duplicates == 0 and result.lines_read == 20


def test_a_quote_that_opens_a_field_never_closed_costs_only_its_line(tmp_path: Path) -> None:
    """``1","`` has an even number of quotes but opens a field that swallows the next lines."""
    from recs_pipeline.adapters.sources import event_source
    from recs_pipeline.core.site import SiteConfig

    base = 1_794_322_800_000
    rows = [f"valid-{i},{100 + i},{base + i * 1000}" for i in range(5)]
    body = "\n".join(["user_id,click_article_id,click_timestamp", *rows[:3], '1","', *rows[3:]])
    path = tmp_path / "clicks.csv"
    path.write_text(body + "\n")
    old = path.stat().st_mtime - 3600
    os.utime(path, (old, old))
    config = SiteConfig.model_validate(
        {
            "name": "c",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {
                "format": "csv",
                "location": str(tmp_path),
                "columns": {
                    "user_id": "user_id",
                    "article_id": "click_article_id",
                    "timestamp": "click_timestamp",
                },
            },
        }
    )
    [(_, day)] = list(event_source(config).read_days([dt.date(2026, 11, 10)]))
    assert sorted(day.events["user_id"]) == [f"valid-{i}" for i in range(5)]
    assert day.quarantine["reason"].tolist() == ["malformed_row"]
    assert day.unaccounted() == 0
