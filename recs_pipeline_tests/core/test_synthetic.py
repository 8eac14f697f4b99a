"""Tests of the synthetic clickstream: format, exact statistics, determinism and realism.

The files are re-read with an independent, line-oriented reference validator, so the counts the
generator reports are checked against what is really on disk, not against its own bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
import pytest

from recs_pipeline.cli import main
from recs_pipeline.core.synthetic import (
    ARTICLE_ID_PATTERN,
    MALFORMED_REASONS,
    MANIFEST_NAME,
    TIMESTAMP_FORMAT,
    GenerationStats,
    GeneratorConfig,
    generate,
    is_bot_useragent,
    read_manifest_stats,
)
from recs_pipeline.core.synthetic_model import BOT_USERAGENTS, HUMAN_USERAGENTS

FIELDS = (
    "event_id",
    "collector_tstamp",
    "domain_userid",
    "event_name",
    "page_urlpath",
    "page_url",
    "page_referrer",
    "useragent",
)
START = dt.date(2026, 11, 20)  # a Friday
SITE_TZ = ZoneInfo("America/Sao_Paulo")
ARTICLE_PATH = re.compile(r"^/([a-z]+(?:-[a-z]+)*)/(\d{4})/(\d{2})/(\d{2})/[a-z]+(?:-[a-z]+)*-\d+$")
FILE_PATH = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})/events-\d{4}\.json\.gz$")


def small_config(**overrides: Any) -> GeneratorConfig:
    values: dict[str, Any] = {
        "start": START,
        "days": 3,
        "users": 1500,
        "articles_per_day": 40,
        "events_per_day": 8000,
        "malformed_share": 0.02,
        "duplicate_share": 0.01,
        "bot_share": 0.03,
        "lines_per_file": 250,  # some hours get several part files
    }
    values.update(overrides)
    return GeneratorConfig(**values)


def classify(line: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """Reference validator: (malformed reason or None, record when the line is valid)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8", None
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "invalid_json", None
    if not isinstance(record, dict):
        return "invalid_json", None
    if any(record.get(name) is None for name in FIELDS if name != "page_referrer"):
        return "missing_field", None
    if not all(isinstance(record[name], str) for name in FIELDS if name != "page_referrer"):
        return "wrong_type", None
    if not (record["page_referrer"] is None or isinstance(record["page_referrer"], str)):
        return "wrong_type", None
    try:
        dt.datetime.strptime(record["collector_tstamp"], TIMESTAMP_FORMAT)
    except ValueError:
        return "bad_timestamp", None
    return None, record


@dataclass
class Parsed:
    """Everything on disk, classified line by line."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    malformed_raw: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    duplicates: int = 0
    duplicate_mismatch: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)  # distinct valid, with "_file"

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.records)
        frame["ts"] = pd.to_datetime(frame["collector_tstamp"], format=TIMESTAMP_FORMAT)
        frame["article_id"] = frame["page_urlpath"].str.extract(ARTICLE_ID_PATTERN)[0]
        frame["section"] = frame["page_urlpath"].str.split("/").str[1]
        frame["bot"] = frame["useragent"].map(is_bot_useragent)
        return frame


def parse(out: Path) -> Parsed:
    parsed = Parsed()
    seen: dict[str, bytes] = {}
    for path in sorted(out.rglob("*.json.gz")):
        relative = path.relative_to(out).as_posix()
        parsed.files.append(relative)
        for line in gzip.decompress(path.read_bytes()).split(b"\n")[:-1]:
            parsed.lines += 1
            reason, record = classify(line)
            if reason is not None:
                parsed.malformed[reason] += 1
                parsed.malformed_raw[reason].append(line)
                continue
            assert record is not None
            if record["event_id"] in seen:
                parsed.duplicates += 1
                parsed.duplicate_mismatch += seen[record["event_id"]] != line
                continue
            seen[record["event_id"]] = line
            record["_file"] = relative
            parsed.records.append(record)
    return parsed


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerationStats, Path, Parsed]:
    out = tmp_path_factory.mktemp("synthetic") / "events"
    stats = generate(small_config(), out)
    return stats, out, parse(out)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerationStats, pd.DataFrame]:
    """No malformed lines, so every heartbeat chain and referrer on disk is complete."""
    out = tmp_path_factory.mktemp("synthetic") / "clean"
    stats = generate(small_config(malformed_share=0.0, days=2, seed=11), out)
    return stats, parse(out).frame()


# --------------------------------------------------------------------------------------------
# Format and exact counts.


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    config = small_config(days=1, users=300, events_per_day=3000)

    def snapshot(out: Path) -> dict[str, bytes]:
        return {
            p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
        }

    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    generate(small_config(days=1, users=300, events_per_day=3000, seed=8), tmp_path / "c")
    first, second, other = (
        snapshot(tmp_path / "a"),
        snapshot(tmp_path / "b"),
        snapshot(tmp_path / "c"),
    )
    assert len(first) > 10
    assert first == second
    assert first != other
    # gzip header: no file name flag, mtime 0
    member = next(v for k, v in first.items() if k.endswith(".gz"))
    assert member[3] & 0x08 == 0 and member[4:8] == b"\0\0\0\0"


def test_valid_lines_have_the_snowplow_fields_and_types(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    _, _, parsed = dataset
    host = "https://demo.example.com"
    assert len(parsed.records) > 10_000
    for record in parsed.records:
        assert set(record) - {"_file"} == set(FIELDS)
        assert re.fullmatch(r"[0-9a-f]{32}", record["event_id"])
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", record["domain_userid"])
        assert record["event_name"] in ("page_view", "page_ping")
        assert record["page_url"] == host + record["page_urlpath"]
        referrer = record["page_referrer"]
        assert referrer is None or referrer.startswith("https://")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", record["collector_tstamp"])


def test_events_sit_in_the_folder_of_their_utc_hour(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    _, _, parsed = dataset
    assert all(FILE_PATH.match(name) for name in parsed.files)
    assert any(name.endswith("events-0001.json.gz") for name in parsed.files)  # parts split
    start = dt.datetime.combine(START, dt.time(), tzinfo=SITE_TZ).astimezone(dt.UTC)
    end = start + dt.timedelta(days=3)
    for record in parsed.records:
        ts = dt.datetime.strptime(record["collector_tstamp"], TIMESTAMP_FORMAT).replace(
            tzinfo=dt.UTC
        )
        assert record["_file"].startswith(ts.strftime("%Y/%m/%d/%H/"))
        assert start <= ts < end


def test_stats_match_what_is_on_disk_exactly(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    stats, out, parsed = dataset
    frame = parsed.frame()
    views = frame[frame["event_name"] == "page_view"]
    article_views = views["article_id"].notna()
    assert stats.lines == parsed.lines
    assert stats.files == len(parsed.files)
    assert stats.valid_events == len(parsed.records)
    assert stats.duplicate_lines == parsed.duplicates > 0
    assert parsed.duplicate_mismatch == 0  # a duplicate is a byte-identical re-delivery
    assert stats.malformed == {reason: parsed.malformed[reason] for reason in MALFORMED_REASONS}
    assert all(count > 0 for count in stats.malformed.values())
    assert stats.lines == stats.valid_events + stats.duplicate_lines + sum(stats.malformed.values())
    assert stats.page_views == len(views)
    assert stats.page_pings == int((frame["event_name"] == "page_ping").sum())
    assert stats.article_page_views == int(article_views.sum())
    assert stats.non_article_page_views == int((~article_views).sum()) > 0
    assert stats.bot_events == int(frame["bot"].sum()) > 0
    assert stats.users == frame["domain_userid"].nunique()
    assert stats.bot_users == frame.loc[frame["bot"], "domain_userid"].nunique()
    assert stats.articles == frame["article_id"].nunique()
    assert stats.first_event == frame["ts"].min().tz_localize("UTC").to_pydatetime()
    assert stats.last_event == frame["ts"].max().tz_localize("UTC").to_pydatetime()
    assert read_manifest_stats(out) == stats
    manifest = orjson.loads((out / MANIFEST_NAME).read_bytes())
    assert manifest["config"]["seed"] == 7 and manifest["config"]["start"] == "2026-11-20"


def test_malformed_lines_cannot_pass_a_lenient_validator(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    _, _, parsed = dataset
    raw = parsed.malformed_raw
    for line in raw["not_utf8"]:  # even a decoder that replaces bad bytes gets broken JSON
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(line.decode("utf-8", errors="replace"))
    stamps = [orjson.loads(line)["collector_tstamp"] for line in raw["bad_timestamp"]]
    parsed_stamps = pd.to_datetime(pd.Series(stamps), format="ISO8601", errors="coerce")
    assert parsed_stamps.isna().all()
    for line in raw["missing_field"]:
        record = orjson.loads(line)
        assert "domain_userid" not in record or "collector_tstamp" not in record
    for line in raw["wrong_type"]:
        assert not isinstance(orjson.loads(line)["domain_userid"], str)


def test_events_per_day_is_roughly_the_target(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    stats, _, _ = dataset
    per_day = stats.valid_events / 3
    assert 0.75 * 8000 < per_day < 1.15 * 8000


# --------------------------------------------------------------------------------------------
# Reading behaviour.


def test_pings_come_every_heartbeat_after_a_view_with_heavy_tailed_dwell(
    clean: tuple[GenerationStats, pd.DataFrame],
) -> None:
    _, frame = clean
    humans = frame[~frame["bot"]]
    key = ["domain_userid", "page_urlpath"]
    stamps = set(zip(humans["domain_userid"], humans["page_urlpath"], humans["ts"], strict=True))
    pings = humans[humans["event_name"] == "page_ping"]
    step = pd.Timedelta(seconds=10)
    for user, path, ts in zip(
        pings["domain_userid"], pings["page_urlpath"], pings["ts"], strict=True
    ):
        assert (user, path, ts - step) in stamps  # the previous heartbeat or the view itself
    assert frame.loc[frame["bot"], "event_name"].eq("page_view").all()  # crawlers do not ping

    # Pings per view = dwell / 10 s: count each view's chain of heartbeats.
    dwell = []
    for _, group in humans.sort_values("ts").groupby(key):
        chain = None
        for name, ts in zip(group["event_name"], group["ts"], strict=True):
            if name == "page_view":
                if chain is not None:
                    dwell.append(chain[1])
                chain = [ts, 0]
            elif chain is not None and ts == chain[0] + step * (chain[1] + 1):
                chain[1] += 1
        if chain is not None:
            dwell.append(chain[1])
    seconds = np.array(dwell) * 10
    assert len(seconds) == (humans["event_name"] == "page_view").sum()
    assert (seconds == 0).mean() > 0.25  # most readers leave quickly...
    assert np.median(seconds) <= 30
    assert (seconds >= 180).mean() > 0.02  # ...some read for minutes
    assert seconds.max() <= 1200


def test_article_popularity_is_heavy_tailed(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    frame = dataset[2].frame()
    views = frame[(frame["event_name"] == "page_view") & ~frame["bot"]]
    counts = views["article_id"].dropna().value_counts()
    top = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert len(counts) > 100
    assert top > 0.40
    assert counts.iloc[0] / counts.sum() < 0.2  # no single article takes everything


def test_readers_concentrate_on_their_sections(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    frame = dataset[2].frame()
    views = frame[(frame["event_name"] == "page_view") & ~frame["bot"]].dropna(subset="article_id")
    active = views.groupby("domain_userid")["article_id"].transform("size") >= 8
    views = views[active]

    def top_section_share(sections: pd.Series) -> float:
        table = pd.crosstab(views["domain_userid"], sections.to_numpy())
        return float((table.max(axis=1) / table.sum(axis=1)).mean())

    shuffled = pd.Series(np.random.default_rng(0).permutation(views["section"].to_numpy()))
    assert views["domain_userid"].nunique() > 100
    assert top_section_share(views["section"]) > top_section_share(shuffled) + 0.2


def test_no_reader_reads_everything_and_readers_come_back(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    frame = dataset[2].frame()
    views = frame[(frame["event_name"] == "page_view") & ~frame["bot"]].dropna(subset="article_id")
    per_user = views.groupby("domain_userid")["article_id"].nunique()
    assert per_user.max() < 0.5 * views["article_id"].nunique()
    views_per_user = views.groupby("domain_userid").size().sort_values(ascending=False)
    heavy = views_per_user.iloc[: len(views_per_user) // 10].sum() / views_per_user.sum()
    assert heavy > 0.34  # few heavy readers (0.27 with equal activity), many light ones
    local_day = views["ts"].dt.tz_localize("UTC").dt.tz_convert(SITE_TZ).dt.date
    days_per_user = local_day.groupby(views["domain_userid"]).nunique()
    assert (days_per_user >= 2).mean() > 0.2


def test_articles_are_read_after_publication_and_in_daytime(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    frame = dataset[2].frame()
    views = frame[(frame["event_name"] == "page_view") & ~frame["bot"]]
    local = views["ts"].dt.tz_localize("UTC").dt.tz_convert(SITE_TZ)
    paths = views["page_urlpath"].str.extract(ARTICLE_PATH)
    is_article = paths[0].notna()
    assert (
        is_article.sum() == views["article_id"].notna().sum()
    )  # the id regex and full shape agree
    published = pd.to_datetime(paths[1] + "-" + paths[2] + "-" + paths[3], format="%Y-%m-%d")
    assert (published[is_article].dt.date <= local[is_article].dt.date).all()
    night = local.dt.hour.between(1, 5).mean()
    assert night < 0.06  # 5 of 24 hours, far below their 21% uniform share


def test_internal_referrers_are_pages_the_reader_saw_before(
    clean: tuple[GenerationStats, pd.DataFrame],
) -> None:
    _, frame = clean
    views = frame[(frame["event_name"] == "page_view") & ~frame["bot"]].sort_values("ts")
    internal = views["page_referrer"].fillna("").str.startswith("https://demo.example.com/")
    assert 0.3 < internal.mean() < 0.9
    first_seen = views.groupby(["domain_userid", "page_url"])["ts"].min()
    for user, referrer, ts in views.loc[
        internal, ["domain_userid", "page_referrer", "ts"]
    ].itertuples(index=False):
        assert first_seen[(user, referrer)] < ts


def test_bots_are_identifiable_by_user_agent_and_crawl_a_lot(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    stats, _, parsed = dataset
    frame = parsed.frame()
    share = frame["bot"].mean()
    assert 0.01 < share < 0.06  # configured 3 %
    assert all(map(is_bot_useragent, BOT_USERAGENTS))
    assert not any(is_bot_useragent(agent) for agent, _ in HUMAN_USERAGENTS)
    views = frame[frame["event_name"] == "page_view"]
    per_user = views.groupby("domain_userid").size()
    bots = views.loc[views["bot"], "domain_userid"].unique()
    assert per_user[bots].median() > 10 * per_user.drop(bots).median()
    assert stats.bot_events == int(frame["bot"].sum())


def test_non_article_pages_are_a_small_share_and_never_look_like_articles(
    dataset: tuple[GenerationStats, Path, Parsed],
) -> None:
    frame = dataset[2].frame()
    views = frame[(frame["event_name"] == "page_view") & ~frame["bot"]]
    other = views.loc[views["article_id"].isna(), "page_urlpath"]
    assert 0.01 < len(other) / len(views) < 0.1  # configured 4 %
    assert other.str.fullmatch(r"/|/section/[a-z-]+|/author/[a-z-]+").all()
    assert {"/"} < set(other)


def test_a_half_hour_time_zone_keeps_events_inside_the_local_days(tmp_path: Path) -> None:
    zone = "Asia/Kolkata"  # UTC+05:30: local midnight falls mid-hour in UTC
    stats = generate(small_config(days=1, users=300, events_per_day=3000, timezone=zone), tmp_path)
    start = dt.datetime.combine(START, dt.time(), tzinfo=ZoneInfo(zone))
    assert start.astimezone(dt.UTC) <= stats.first_event
    assert stats.last_event < start.astimezone(dt.UTC) + dt.timedelta(days=1)
    assert stats.valid_events == len(parse(tmp_path).records)


# --------------------------------------------------------------------------------------------
# Guard rails and the command line.


def test_generate_refuses_a_non_empty_directory_and_bad_settings(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate(small_config(days=1, users=10, events_per_day=10), tmp_path)
    with pytest.raises(ValueError):
        small_config(malformed_share=0.7)
    with pytest.raises(ValueError):
        small_config(sections=("news", "top-10"))  # would look like an article id
    with pytest.raises(ValueError):
        small_config(days=0)


def test_cli_generate_refuses_existing_data_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["generate", "--out", str(out), "--start", "2026-11-20", "--days", "1"]
    args += ["--users", "200", "--events-per-day", "2000", "--seed", "3", "--quiet"]
    assert main(args) == 0
    summary = capsys.readouterr().out
    stats = read_manifest_stats(out)
    assert f"valid events {stats.valid_events:,}" in summary
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    marker = out / "stray.txt"
    marker.write_text("left over")
    assert main([*args, "--force", "--timezone", "Nowhere/Atlantis"]) == 2  # checked before wiping
    assert marker.exists()
    assert main([*args, "--force"]) == 0
    assert not marker.exists()
    assert read_manifest_stats(out) == stats  # same seed, same data


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "recs_pipeline.cli", "generate", "--out", str(out)]
    command += ["--start", "2026-11-20", "--days", "1", "--users", "100", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (out / MANIFEST_NAME).exists()
    assert read_manifest_stats(out).valid_events > 0
