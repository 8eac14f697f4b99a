"""Property: garbage mixed with valid events never costs or duplicates a valid event."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recs_pipeline.core.events import EventRules, assemble_day, parse_snowplow_lines

TZ = ZoneInfo("UTC")
DAY = dt.date(2026, 11, 10)
HOUR = pd.Timestamp("2026-11-10 15:00", tz="UTC")
NOW = pd.Timestamp("2026-11-20", tz="UTC")
RULES = EventRules(bot_user_agent_pattern="bot")


def valid(index: int, second: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"valid-{index}",
            "collector_tstamp": f"2026-11-10 15:{second // 60:02d}:{second % 60:02d}.000",
            "domain_userid": f"user-{index % 7}",
            "event_name": "page_view" if index % 2 else "page_ping",
            "page_urlpath": f"/news/story-{index % 11 + 1}",
            "useragent": "Mozilla/5.0",
        }
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
field_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=40),
    st.sampled_from(["", "1970-01-01 00:00:00", "2999-01-01 00:00:00", "x" * 5000]),
    json_values,
)
# Records that look like events but are wrong somewhere (garbage ids never collide with valid ones).
near_events = st.fixed_dictionaries(
    {
        "event_id": st.one_of(
            st.none(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.text(max_size=10).map(lambda s: f"junk-{s}"),
        ),
        "collector_tstamp": field_values,
        "domain_userid": field_values,
        "event_name": st.one_of(
            st.sampled_from(["page_view", "page_ping", "link_click"]), field_values
        ),
        "page_urlpath": field_values,
        "useragent": st.one_of(st.just("Googlebot/2.1"), field_values),
    }
).map(orjson.dumps)
garbage = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\n" not in b),
    json_values.map(orjson.dumps),
    near_events,
    st.just(b"\xff\xfe{not utf8}"),
    st.just(b'{"event_id": "' + b"a" * 40_000 + b'"}'),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=0, max_value=3599), min_size=1, max_size=30),
    st.lists(garbage, max_size=30),
    st.randoms(use_true_random=False),
    st.integers(min_value=1, max_value=7),
)
def test_every_valid_event_survives_exactly_once(
    seconds: list[int], junk: list[bytes], rng: object, redeliver_every: int
) -> None:
    lines = [valid(i, s) for i, s in enumerate(seconds)]
    lines += [lines[i] for i in range(0, len(lines), redeliver_every)]  # at-least-once delivery
    lines += junk
    rng.shuffle(lines)  # type: ignore[attr-defined]
    data = b"\n".join(lines)
    batches = [data.split(b"\n")[i : i + 5] for i in range(0, len(data.split(b"\n")), 5)]
    parsed = parse_snowplow_lines(
        batches, "2026/11/10/15/f.json.gz", HOUR, bot_user_agent_pattern="bot"
    )
    day = assemble_day([parsed], DAY, TZ, RULES, now=NOW)
    kept = day.events["event_id"]
    valid_ids = {f"valid-{i}" for i in range(len(seconds))}
    assert sorted(kept[kept.str.startswith("valid-")]) == sorted(valid_ids)
    assert not kept.duplicated().any()
    # Every non-empty line is accounted for exactly once.
    non_empty = sum(1 for line in data.split(b"\n") if line.strip())
    assert day.lines_read == non_empty
    assert (
        len(day.events)
        + day.duplicates
        + day.non_article_events
        + len(day.quarantine)
        + day.other_days
        == non_empty
    )
