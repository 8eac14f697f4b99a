"""Property (issue 12): corrupt files mixed with good ones, and garbage lines mixed with good
lines, never cost or duplicate a valid event of a readable file; every unreadable file is named
in the quarantine; every line read is accounted for."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import tempfile
from pathlib import Path

import orjson
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recs_pipeline.adapters.sources import event_source
from recs_pipeline.core.site import SiteConfig

DAY = dt.date(2026, 11, 10)
NOW = pd.Timestamp("2026-12-01", tz="UTC")
OLD = 1_790_000_000
KINDS = ("good", "good_plain", "truncated", "magic_garbage", "empty", "random")


def valid(file: int, index: int, hour: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"valid-{file}-{index}",
            "collector_tstamp": f"2026-11-10 {hour:02d}:{index % 60:02d}:{index % 59:02d}.000",
            "domain_userid": f"user-{index % 5}",
            "event_name": "page_view",
            "page_urlpath": f"/news/story-{index % 9 + 1}",
            "useragent": "Mozilla/5.0",
        }
    )


garbage_line = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    st.text(max_size=40).map(lambda t: t.replace("\n", " ").encode()),
    st.just(b'{"event_id": "x\\u0000", "domain_userid": "\\u0000"}'),
    st.just(b'{"event_id": "' + b"a" * 40_000 + b'"}'),
)
file_spec = st.tuples(
    st.sampled_from(KINDS),
    st.integers(min_value=1, max_value=40),  # valid lines
    st.lists(garbage_line, max_size=8),
    st.integers(min_value=0, max_value=10_000),  # where a truncated file is cut / random seed
)


def write(root: Path, number: int, spec: tuple[str, int, list[bytes], int]) -> tuple[str, set[str]]:
    """Write one hour file; its relative path and the valid ids it holds when readable."""
    kind, n, junk, knob = spec
    hour = 2 + number  # one hour folder per file, all inside the day
    folder = root / f"2026/11/10/{hour:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{number}.json.gz"
    lines = [valid(number, i, hour) for i in range(n)] + junk
    body = b"\n".join(lines) + b"\n"
    ids = {f"valid-{number}-{i}" for i in range(n)}
    if kind == "good":
        path.write_bytes(gzip.compress(body))
    elif kind == "good_plain":
        path.write_bytes(body)  # not compressed at all: read as it is
    elif kind == "truncated":
        whole = gzip.compress(body)
        path.write_bytes(whole[: 10 + knob % max(1, len(whole) - 18)])
        ids = set()
    elif kind == "magic_garbage":
        path.write_bytes(b"\x1f\x8b\x08\x00" + knob.to_bytes(4, "big") * 50)
        ids = set()
    elif kind == "empty":
        path.write_bytes(b"")
        ids = set()
    else:
        path.write_bytes(b"\x00\x01junk " + knob.to_bytes(4, "big") * 30)
        ids = set()
    os.utime(path, (OLD, OLD))
    return path.relative_to(root).as_posix(), ids


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(file_spec, min_size=1, max_size=8))
def test_corrupt_files_cost_only_themselves(specs: list[tuple[str, int, list[bytes], int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        expected: set[str] = set()
        unreadable: set[str] = set()
        for number, spec in enumerate(specs):
            name, ids = write(root, number, spec)
            expected |= ids
            if spec[0] in ("truncated", "magic_garbage"):
                unreadable.add(name)
        config = SiteConfig.model_validate(
            {
                "name": "g",
                "timezone": "UTC",
                "start_date": "2026-11-01",
                "events": {"format": "snowplow", "location": str(root)},
            }
        )
        [(_, day)] = list(event_source(config).read_days([DAY], now=NOW))
    kept = day.events["event_id"]
    assert not kept.duplicated().any()
    assert set(kept[kept.str.startswith("valid-")]) == expected
    whole = day.quarantine[day.quarantine["reason"] == "unreadable_file"]
    assert set(whole["source_file"]) == unreadable
    assert day.unaccounted() == 0


csv_garbage = st.one_of(
    st.text(alphabet='",\t\r ab1', max_size=30).map(lambda t: t.replace("\n", " ")),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b).map(lambda b: b.decode("latin-1")),
    st.just('"unterminated,1,2'),
    st.just('u,"a,b",1794322800000'),
    st.just("x" * 40_000),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=1, max_value=60),
    st.lists(csv_garbage, max_size=15),
    st.randoms(use_true_random=False),
)
def test_garbage_lines_in_a_click_log_cost_only_themselves(
    n: int, junk: list[str], rng: object
) -> None:
    base = 1_794_322_800_000  # 2026-11-10 12:00 UTC, in ms
    rows = [f"valid-{i},{100 + i % 9},{base + i * 1000}" for i in range(n)]
    lines = rows + junk
    rng.shuffle(lines)  # type: ignore[attr-defined]
    body = "\n".join(["user_id,click_article_id,click_timestamp", *lines]) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clicks.csv"
        path.write_bytes(body.encode("utf-8", errors="surrogateescape"))  # as read below
        os.utime(path, (OLD, OLD))
        config = SiteConfig.model_validate(
            {
                "name": "c",
                "timezone": "UTC",
                "start_date": "2026-11-01",
                "events": {
                    "format": "csv",
                    "location": folder,
                    "columns": {
                        "user_id": "user_id",
                        "article_id": "click_article_id",
                        "timestamp": "click_timestamp",
                    },
                },
            }
        )
        [(_, day)] = list(event_source(config).read_days([DAY], now=NOW))
    users = day.events["user_id"]
    valid_users = users[users.str.startswith("valid-")]
    assert sorted(valid_users) == sorted(f"valid-{i}" for i in range(n))
    data = body.encode("utf-8", errors="surrogateescape")
    non_empty = sum(1 for line in data.split(b"\n")[1:] if line.strip())
    assert day.lines_read == non_empty
    assert day.unaccounted() == 0
