"""Property: every bulk path gives what the line-by-line path gives, on messy input.

Same events (every column, line numbers included), same quarantine (reason, file, line number,
raw text) and same counts, for each source format: Snowplow JSON lines (``parse_snowplow_fast``
and, for small files parsed together, ``parse_snowplow_group``, against
``parse_snowplow_lines``), delimited click logs and MIND behaviours (one bulk parse per batch of
lines against every line parsed on its own), GA4 JSON lines (batches against single lines), and
the day assembled from either.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recs_pipeline.adapters.sources import event_source
from recs_pipeline.adapters.sources.base import FileSource, LandingFile
from recs_pipeline.core.events import (
    EventRules,
    ParsedLines,
    Pseudonymiser,
    assemble_day,
    parse_ga4_lines,
    parse_snowplow_fast,
    parse_snowplow_group,
    parse_snowplow_lines,
)
from recs_pipeline.core.site import SiteConfig
from recs_pipeline_tests.core.test_events_garbage import garbage
from recs_pipeline_tests.core.test_events_garbage import valid as valid_snowplow
from recs_pipeline_tests.test_robustness_garbage_files import csv_garbage

TZ = ZoneInfo("UTC")
DAY = dt.date(2026, 11, 10)
HOUR = pd.Timestamp("2026-11-10 15:00", tz="UTC")
NOW = pd.Timestamp("2026-11-20", tz="UTC")
OLD = 1_700_000_000  # an old modification time: files are settled
RULES = EventRules(bot_user_agent_pattern="bot")
FILE = "2026/11/10/15/f.json.gz"


def snowplow(**members: object) -> bytes:
    record: dict[str, object] = {
        "event_id": "e1",
        "collector_tstamp": "2026-11-10 15:01:02.003",
        "domain_userid": "u1",
        "event_name": "page_view",
        "page_urlpath": "/news/story-1",
        "useragent": "Mozilla/5.0",
    }
    record.update(members)
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


# Lines that a bulk reader could easily get wrong: what only a per-line check catches.
TRICKY = [
    snowplow(event_id="ctl-\u0001"),  # an escaped control character
    snowplow(domain_userid="del\x7f"),  # DEL, raw
    snowplow(page_referrer="\\u0000"),
    snowplow(page_url=False),  # falsy page_url: page_urlpath is the page
    snowplow(page_url=""),
    snowplow(page_url=0, page_urlpath=...),
    snowplow(page_url=5),
    snowplow(page_url="https://demo.example.com/news/story-2?utm=1"),
    snowplow(event_id=""),
    snowplow(collector_tstamp=""),
    snowplow(collector_tstamp="2026-13-40 99:00:00"),
    snowplow(collector_tstamp="1999-01-01 00:00:00"),
    snowplow(event_name=7),
    snowplow(useragent=["bot"]),
    snowplow(page_referrer={"x": 1}),
    snowplow(page_referrer="r" * 2049),
    snowplow(domain_userid="u" * 2048),
    snowplow(domain_userid="u" * 2049),
    snowplow(event_id="dup", useragent="Googlebot/2.1"),
    snowplow(event_id="é-ünïcode", domain_userid="ü"),
    b'{"event_id":"k1","event_id":"k2","collector_tstamp":"2026-11-10 15:00:01",'
    b'"domain_userid":"u","event_name":"page_view","page_urlpath":"/a-1"}',
    b'{"event_id":"n","collector_tstamp":"2026-11-10 15:00:01","domain_userid":"u",'
    b'"event_name":"page_view","page_urlpath":"/a-1","x":1e999}',
    b'{"event_id":"s","collector_tstamp":"2026-11-10 15:00:01","domain_userid":"u",'
    b'"event_name":"page_view","page_urlpath":"/a-1","x":"\\ud800"}',
    b'{"event_id":"t","collector_tstamp":"2026-11-10 15:00:01","domain_userid":"u",'
    b'"event_name":"page_view","page_urlpath":"/a-1"} {"event_id":"t2"}',
    b"  " + snowplow(event_id="spaced") + b"  ",
    b"   ",
    b"",
    b"[1, 2]",
    b'"a string"',
    snowplow(event_id="long", x="y" * 33_000),
]
tricky = st.sampled_from(TRICKY)
lines_strategy = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 40), st.integers(0, 3599)).map(lambda t: valid_snowplow(*t)),
        garbage,
        tricky,
    ),
    max_size=40,
)


def sorted_parsed(parsed: ParsedLines) -> tuple[pd.DataFrame, pd.DataFrame]:
    events = parsed.events.sort_values("line_no", kind="stable").reset_index(drop=True)
    # Values compared, not how categories happen to be ordered (one union per batch of lines).
    for name, dtype in events.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            events[name] = events[name].astype("string")
    quarantine = parsed.quarantine.sort_values(["line_no", "reason"], kind="stable")
    return events, quarantine.reset_index(drop=True)


def assert_same(fast: ParsedLines, slow: ParsedLines) -> None:
    fast_events, fast_quarantine = sorted_parsed(fast)
    slow_events, slow_quarantine = sorted_parsed(slow)
    pd.testing.assert_frame_equal(fast_events, slow_events)
    pd.testing.assert_frame_equal(fast_quarantine, slow_quarantine)
    assert (fast.lines, fast.ignored, fast.extra_events) == (
        slow.lines,
        slow.ignored,
        slow.extra_events,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_strategy, st.integers(1, 9), st.booleans())
def test_snowplow_fast_path_is_the_line_by_line_path(
    lines: list[bytes], batch: int, pseudonymise: bool
) -> None:
    batches = [lines[i : i + batch] for i in range(0, len(lines), batch)] or [[]]
    users = Pseudonymiser("a-salt-of-twenty-chars") if pseudonymise else None
    options = {"users": users, "bot_user_agent_pattern": "bot", "max_line_bytes": 32 * 1024}
    fast = parse_snowplow_fast(batches, FILE, HOUR, **options)  # type: ignore[arg-type]
    slow = parse_snowplow_lines(batches, FILE, HOUR, **options)  # type: ignore[arg-type]
    assert_same(fast, slow)
    fast_day = assemble_day([fast], DAY, TZ, RULES, now=NOW)
    slow_day = assemble_day([slow], DAY, TZ, RULES, now=NOW)
    pd.testing.assert_frame_equal(fast_day.events, slow_day.events)
    pd.testing.assert_frame_equal(fast_day.quarantine, slow_day.quarantine)
    assert fast_day.unaccounted() == slow_day.unaccounted() == 0


def test_snowplow_fast_path_on_a_file_of_every_tricky_line() -> None:
    """Each tricky line once, amid valid ones, in one batch: the same as line by line."""
    lines = [valid_snowplow(i, i * 7 % 3600) for i in range(50)]
    for position, line in enumerate(TRICKY):
        lines.insert(position * 2, line)
    fast = parse_snowplow_fast([lines], FILE, HOUR, bot_user_agent_pattern="bot")
    slow = parse_snowplow_lines([lines], FILE, HOUR, bot_user_agent_pattern="bot")
    assert_same(fast, slow)
    assert len(fast.quarantine) > 10 and len(fast.events) > 50


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines_strategy, min_size=1, max_size=6), st.booleans())
def test_small_snowplow_files_parsed_together_are_each_file_parsed_alone(
    files: list[list[bytes]], pseudonymise: bool
) -> None:
    users = Pseudonymiser("a-salt-of-twenty-chars") if pseudonymise else None
    names = [f"2026/11/10/15/f{i}.json.gz" for i in range(len(files))]
    together = parse_snowplow_group(
        list(zip(names, files, strict=True)), users=users, bot_user_agent_pattern="bot"
    )
    for name, lines, parsed in zip(names, files, together, strict=True):
        alone = parse_snowplow_lines([lines], name, users=users, bot_user_agent_pattern="bot")
        assert parsed.source_file == name
        assert_same(parsed, alone)


def read_file(source: FileSource, batch_lines: int) -> ParsedLines:
    source.batch_lines = batch_lines
    [file] = source.list_files()
    parsed = source.parse_file(LandingFile(file.path, file.size, file.mtime))  # type: ignore[attr-defined]
    assert parsed is not None
    return parsed


def site(folder: str, events: dict[str, object]) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "name": "p",
            "timezone": "UTC",
            "start_date": "2026-11-01",
            "events": {"location": folder, **events},
        }
    )


def write(folder: str, name: str, body: bytes) -> None:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, (OLD, OLD))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=12),
    st.lists(csv_garbage, max_size=6),
    st.randoms(use_true_random=False),
)
def test_delimited_bulk_parse_is_each_line_parsed_alone(
    n: int, junk: list[str], rng: object
) -> None:
    base = 1_794_322_800_000  # 2026-11-10 12:00 UTC, in ms
    rows = [f"valid-{i},{100 + i % 9},{base + i * 1000},Googlebot" for i in range(n)]
    rows += ['"quoted, user",7,1794322800000,x', "u,8,not-a-time,x", "u,,1794322800000,x"]
    lines = rows + junk
    rng.shuffle(lines)  # type: ignore[attr-defined]
    body = "\n".join(["user_id,click_article_id,click_timestamp,agent", *lines]) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "clicks.csv", body.encode("utf-8", errors="surrogateescape"))
        config = site(
            folder,
            {
                "format": "csv",
                "columns": {
                    "user_id": "user_id",
                    "article_id": "click_article_id",
                    "timestamp": "click_timestamp",
                    "user_agent": "agent",
                },
            },
        )
        source = event_source(config)
        assert isinstance(source, FileSource)
        bulk = read_file(source, 65_536)
        alone = read_file(source, 1)
        assert_same(bulk, alone)


mind_garbage = st.one_of(
    st.text(alphabet="\tN1-0 ab\r", max_size=30),
    st.just("1\tu\t11/10/2026 3:00:00 PM\tN1 N2\tN5-1 N6-x"),
    st.just("2\tu\tnot a time\t\tN5-1"),
    st.just("3\t\t11/10/2026 3:00:00 PM\t\tN5-1"),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=10),
    st.lists(mind_garbage, max_size=5),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_mind_bulk_parse_is_each_line_parsed_alone(
    n: int, junk: list[str], rng: object, history: bool
) -> None:
    rows = [
        f"{i}\tuser-{i % 5}\t11/10/2026 {1 + i % 11}:0{i % 10}:00 PM\tN{i % 3} N9"
        f"\tN{i}-1 N{i + 1}-0"
        for i in range(n)
    ]
    lines = rows + junk
    rng.shuffle(lines)  # type: ignore[attr-defined]
    body = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "behaviors.tsv", body)
        config = site(folder, {"format": "mind", "mind_history": history})
        source = event_source(config)
        assert isinstance(source, FileSource)
        bulk = read_file(source, 65_536)
        alone = read_file(source, 1)
        assert_same(bulk, alone)


def ga4(**members: object) -> bytes:
    record: dict[str, object] = {
        "event_timestamp": 1_794_322_800_000_000,
        "event_name": "page_view",
        "user_pseudo_id": "u1",
        "event_params": [
            {"key": "page_location", "value": {"string_value": "https://x.com/a-1"}},
            {"key": "engagement_time_msec", "value": {"int_value": 1200}},
        ],
    }
    record.update(members)
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


ga4_lines = st.lists(
    st.one_of(
        st.integers(0, 10**9).map(lambda i: ga4(event_timestamp=1_794_322_800_000_000 + i)),
        st.sampled_from(
            [
                ga4(event_timestamp="1794322800000001"),
                ga4(event_timestamp="soon"),
                ga4(event_name="scroll"),
                ga4(event_name="session_start", event_params=[]),
                ga4(user_pseudo_id=...),
                ga4(event_params="not a list"),
                ga4(event_params=[{"key": "page_location", "value": {"int_value": 5}}]),
                ga4(event_params=[{"key": "engagement_time_msec", "value": {"double_value": 2.0}}]),
                ga4(user_pseudo_id="ctl\u0002"),
            ]
        ),
        garbage,
    ),
    max_size=15,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ga4_lines, st.integers(2, 9))
def test_ga4_json_batches_are_single_lines(lines: list[bytes], batch: int) -> None:
    batches = [lines[i : i + batch] for i in range(0, len(lines), batch)] or [[]]
    bulk = parse_ga4_lines(batches, "events_20261110/0.json", home=DAY)
    alone = parse_ga4_lines([[line] for line in lines], "events_20261110/0.json", home=DAY)
    assert_same(bulk, alone)
