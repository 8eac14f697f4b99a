"""Site files and day/as-of semantics."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from recs_pipeline import settings
from recs_pipeline.core.site import load_site, load_sites
from recs_pipeline.core.timeframe import as_of_for_day, day_bounds, window_days

TZ = ZoneInfo("America/Sao_Paulo")


def test_shipped_sites_load() -> None:
    sites = {site.name: site for site in load_sites(settings.sites_dir(), {})}
    assert set(sites) >= {"demo", "globo"}
    assert sites["demo"].events.format == "snowplow"
    assert sites["globo"].events.columns is not None
    assert sites["globo"].events.columns.article_id == "click_article_id"
    assert sites["demo"].events.location == "var/landing/demo"


def test_environment_references_expand(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: s\nstart_date: 2026-01-01\nevents: {format: snowplow, location: '${LAND}/s'}\n"
    )
    site = load_site(tmp_path / "s.yaml", {"LAND": "/data"})
    assert site.events.location == "/data/s"
    with pytest.raises(ValueError, match="LAND is not set"):
        load_site(tmp_path / "s.yaml", {})


@pytest.mark.parametrize(
    "body,message",
    [
        (
            "name: Bad-Name\nstart_date: 2026-01-01\nevents: {format: snowplow, location: x}",
            "lower-case",
        ),
        (
            "name: s\nstart_date: 2026-01-01\ntimezone: Mars/Base\n"
            "events: {format: snowplow, location: x}",
            "time zone",
        ),
        ("name: s\nstart_date: 2026-01-01\nevents: {format: csv, location: x}", "columns"),
        (
            "name: s\nstart_date: 2026-01-01\nevents: {format: snowplow, location: x}\ntypo: 1",
            "typo",
        ),
    ],
)
def test_bad_site_files_say_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message) as error:
        load_site(path, {})
    assert str(path) in str(error.value)


def test_day_bounds_follow_the_time_zone_and_dst() -> None:
    start, end = day_bounds("2026-11-10", TZ)
    assert start == pd.Timestamp("2026-11-10 03:00", tz="UTC")
    assert end - start == pd.Timedelta(hours=24)
    ny_start, ny_end = day_bounds(dt.date(2026, 3, 8), ZoneInfo("America/New_York"))
    assert ny_end - ny_start == pd.Timedelta(hours=23)


def test_as_of_defaults_to_end_of_day_or_now_and_checks_explicit_moments() -> None:
    _, end = day_bounds("2026-11-10", TZ)
    later = end + pd.Timedelta(days=3)
    assert as_of_for_day("2026-11-10", TZ, now=later) == end
    midday = end - pd.Timedelta(hours=6)
    assert as_of_for_day("2026-11-10", TZ, now=midday) == midday
    assert as_of_for_day("2026-11-10", TZ, explicit=midday, now=later) == midday
    with pytest.raises(ValueError, match="outside partition"):
        as_of_for_day("2026-11-10", TZ, explicit=later, now=later)


def test_window_days_end_with_the_day() -> None:
    assert window_days("2026-11-02", 3) == ["2026-10-31", "2026-11-01", "2026-11-02"]


def test_ranker_training_reads_its_anchors_and_their_lookback() -> None:
    from recs_pipeline.core.site import RankerConfig

    # 60 anchors 2 h apart + 3 held-out windows + 1 label window = 126 h -> 6 days; 3 days of
    # lookback before the oldest anchor; the as-of day itself.
    config = RankerConfig(history_days=3, training_slots=60, validation_slots=3, label_hours=2)
    assert config.training_days == 3 + 6 + 1
    # ALS and similar articles the ranker trains with are older than its oldest anchor.
    assert config.anchor_span_days == 6
    hourly = RankerConfig(
        history_days=1, training_slots=24, anchor_step_hours=1, validation_slots=1
    )
    assert hourly.training_days == 1 + 2 + 1
