"""The bulk readers against the line-by-line validator, on inputs chosen to trip them.

``test_events_fast_paths`` compares every bulk path with the line-by-line one on generated messy
input; these are the cases found while writing the bulk readers (what a native JSON reader
accepts and orjson refuses, GA4 rows of kinds the site ignores), pinned so they never regress.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import tempfile
from multiprocessing.queues import Queue

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recs_pipeline.adapters.sources import CsvEvents, event_source
from recs_pipeline.core.events import (
    parse_ga4_lines,
    parse_snowplow_fast,
    parse_snowplow_lines,
    parse_timestamps,
    tables,
)
from recs_pipeline.core.events.ga4 import hex16
from recs_pipeline_tests.core.test_events_fast_paths import (
    FILE,
    HOUR,
    assert_same,
    ga4,
    site,
    snowplow,
    write,
)
from recs_pipeline_tests.test_robustness_garbage_files import csv_garbage

DAY = dt.date(2026, 11, 10)


def test_ga4_rows_after_an_ignored_row_are_kept() -> None:
    """A page view after a kind the site ignores (``session_start``) in the same batch: kept, as
    when each line is read alone (the table's index once misaligned its columns)."""
    lines = [ga4(event_name="session_start", event_params=[]), ga4()]
    bulk = parse_ga4_lines([lines], "events_20261110/0.json", home=DAY)
    alone = parse_ga4_lines([[line] for line in lines], "events_20261110/0.json", home=DAY)
    assert_same(bulk, alone)
    assert len(bulk.events) == 1 and bulk.ignored == 1 and bulk.quarantine.empty


# msgspec skips members it does not take without converting or checking them; orjson (the
# validator) refuses these lines, so the fast path must hand them over.
SKIPPED_MEMBER_TRAPS = [
    b'"x":1e999',
    b'"x":-1.5E+400',
    b'"x":' + b"9" * 400,
    b'"x":[1, 2e999]',
    b'"x":{"y": 1e999}',
    b'"x":"\xff"',
    b'"x":"\xed\xa0\x80"',  # a surrogate, UTF-8 encoded
    b'"x":"\xc0\xaf"',  # an overlong encoding
    b'"x":"\xf4\x90\x80\x80"',  # beyond U+10FFFF
]


@pytest.mark.parametrize("member", SKIPPED_MEMBER_TRAPS)
def test_snowplow_fast_path_hands_over_what_only_orjson_refuses(member: bytes) -> None:
    line = snowplow()[:-1] + b"," + member + b"}"
    lines = [snowplow(event_id="before"), line, snowplow(event_id="after")]
    fast = parse_snowplow_fast([lines], FILE, HOUR)
    slow = parse_snowplow_lines([lines], FILE, HOUR)
    assert_same(fast, slow)
    assert list(fast.quarantine["line_no"]) == [2]


# What the fast path takes: the same values as orjson gives the validator.
TAKEN = [
    snowplow(x=1e300, y=-(10**18), z=[{"a": None}], w=True),
    snowplow(page_url="https://demo.example.com/é-1", useragent="Mozilla ü"),
    b'{"event_id":"k1","event_id":"k2","collector_tstamp":"2026-11-10 15:00:01",'
    b'"domain_userid":"u","event_name":"page_view","page_urlpath":"/a-1"}',
    b' \t{"event_id":"w","collector_tstamp":"2026-11-10 15:00:01","domain_userid":"u",'
    b'"event_name":"page_view","page_url":"","page_urlpath":"/a-1"}\r',
    snowplow(page_url=None, page_referrer=None, useragent=None),
]


def test_snowplow_fast_path_takes_what_orjson_takes() -> None:
    lines = [*TAKEN, snowplow(event_id=5), snowplow(page_urlpath=...), b"{}"]
    fast = parse_snowplow_fast([lines], FILE, HOUR)
    slow = parse_snowplow_lines([lines], FILE, HOUR)
    assert_same(fast, slow)
    assert list(fast.events["line_no"]) == list(range(1, len(TAKEN) + 1))
    assert fast.events.loc[2, "event_id"] == "k2"  # the last of a repeated member, as orjson


def test_snowplow_fast_path_on_many_lines_of_every_kind() -> None:
    """Batches far longer than the property tests' (the scan runs per batch)."""
    lines: list[bytes] = []
    for i in range(3000):
        kind = i % 7
        if kind == 0:
            trap = SKIPPED_MEMBER_TRAPS[i % len(SKIPPED_MEMBER_TRAPS)]
            lines.append(snowplow(event_id=f"e{i}")[:-1] + b"," + trap + b"}")
        elif kind == 1:
            lines.append(TAKEN[i % len(TAKEN)].replace(b'"k2"', f'"k{i}"'.encode()))
        elif kind == 2:
            lines.append(snowplow(event_id=f"e{i}", domain_userid=f"ctl\u0001{i}"))
        else:
            stamp = f"2026-11-10 15:{i % 60:02d}:{i % 59:02d}.{i % 1000:03d}"
            lines.append(snowplow(event_id=f"e{i}", collector_tstamp=stamp))
    batches = [lines[i : i + 1000] for i in range(0, len(lines), 1000)]
    fast = parse_snowplow_fast(batches, FILE, HOUR, bot_user_agent_pattern="bot")
    slow = parse_snowplow_lines(batches, FILE, HOUR, bot_user_agent_pattern="bot")
    assert_same(fast, slow)
    assert isinstance(fast.events, pd.DataFrame) and len(fast.events) > 2000
    assert orjson.loads(TAKEN[0])["x"] == 1e300


NUMERIC_STAMPS = [
    ["1", "-0", "007"],
    ["1794322800", "1794322800000", "1794322800000000"],
    ["1794322800000123456", "99999999999999999", "9223372036854775807"],
    ["9223372036854775808"],
    ["+7", "1"],
    ["0x10"],
    ["1.0", "1e3"],
    ["١٢"],
    ["1", None],
    ["", "5"],
]


@pytest.mark.parametrize("values", NUMERIC_STAMPS)
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_numeric_timestamps_by_arrow_are_pandas_to_numeric(
    values: list[str | None], unit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    column = pd.Series(values, dtype="string")
    bulk = parse_timestamps(column, unit)
    monkeypatch.setattr(tables, "_integers", lambda text: None)
    pd.testing.assert_series_equal(bulk, parse_timestamps(column, unit))


def test_hex16_is_format() -> None:
    values = np.array([0, 1, 2**64 - 1, 0xDEADBEEF, 2**63, 12345678901234567], dtype=np.uint64)
    assert hex16(values).to_pylist() == [f"{int(v):016x}" for v in values]
    assert hex16(np.array([], dtype=np.uint64)).to_pylist() == []


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(csv_garbage, max_size=4), min_size=1, max_size=5),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_small_delimited_files_read_together_are_each_file_read_alone(
    junk: list[list[str]], rng: random.Random, pseudonymise: bool
) -> None:
    base = 1_794_322_800_000  # 2026-11-10 12:00 UTC, in ms
    with tempfile.TemporaryDirectory() as folder:
        for index, extra in enumerate(junk):
            rows = [f"u{index}-{i},{100 + i},{base + i * 1000},Googlebot" for i in range(index * 3)]
            rows += [f"u,{index},{base},x", "u,8,not-a-time,x", *extra]
            rng.shuffle(rows)
            body = "\n".join(["user_id,click_article_id,click_timestamp,agent", *rows]) + "\n"
            write(folder, f"clicks-{index}.csv", body.encode("utf-8", errors="surrogateescape"))
        events: dict[str, object] = {
            "format": "csv",
            "columns": {
                "user_id": "user_id",
                "article_id": "click_article_id",
                "timestamp": "click_timestamp",
                "user_agent": "agent",
            },
        }
        if pseudonymise:
            events["pseudonymise_salt_env"] = "RECS_TEST_BULK_SALT"
        os.environ["RECS_TEST_BULK_SALT"] = "a-salt-of-twenty-chars"
        source = event_source(site(folder, events))
        assert isinstance(source, CsvEvents)
        source.batch_lines = 7  # several groups
        files = source.list_files()
        together = source.read_files(files)
        for file, parsed in zip(files, together, strict=True):
            alone = source.parse_file(file)
            assert parsed is not None and parsed.source_file == alone.source_file
            assert_same(parsed, alone)
            assert set(parsed.quarantine["source_file"]) <= {alone.source_file}


def _parse_in_child(lines: list[bytes], results: Queue[int]) -> None:
    results.put(len(parse_snowplow_fast([lines], FILE, HOUR).events))


def test_snowplow_fast_path_in_a_forked_process() -> None:
    """A process forked after parsing parses too (the scanning thread is per process)."""
    lines = [snowplow(event_id=f"e{i}") for i in range(20)]
    assert len(parse_snowplow_fast([lines], FILE, HOUR).events) == 20
    context = multiprocessing.get_context("fork")
    results: Queue[int] = context.Queue()
    child = context.Process(target=_parse_in_child, args=(lines, results))
    child.start()
    try:
        assert results.get(timeout=60) == 20
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
