"""The whole graph for a small generated site, through Dagster, on the embedded default.

Tests in this module share one materialisation (see conftest) and run in file order: the later
ones change state (an as-of rebuild, a failing publish) and restore it.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.model_store import load_als
from recs_pipeline.core.holdout import next_day_truth, random_recommendations, seen_articles
from recs_pipeline.core.metrics import ranking_metrics
from recs_pipeline.core.timeframe import day_bounds
from recs_pipeline.report import STAGES
from recs_pipeline_tests.conftest import Materialised

PARTITIONED = (*STAGES,)


def lake_files(state: Materialised, asset: str) -> dict[str, bytes]:
    return {
        day: Path(state.lake.partition_path(state.site.name, asset, day)).read_bytes()
        for day in state.generated.days
    }


def per_day_totals(state: Materialised, asset: str, names: list[str]) -> dict[str, int]:
    """``names`` summed over each day's own metadata (the latest materialisation of each day)."""
    totals = dict.fromkeys(names, 0)
    for day in state.generated.days:
        records = state.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey([state.site.name, asset]), asset_partitions=[day]
            ),
            limit=1,
        ).records
        assert records and records[0].asset_materialization is not None, day
        metadata = records[0].asset_materialization.metadata
        for name in names:
            totals[name] += int(metadata[name].value)  # type: ignore[arg-type]
    return totals


def test_every_stage_has_a_partition_for_every_day(materialised: Materialised) -> None:
    for asset in PARTITIONED:
        assert materialised.lake.days(materialised.site.name, asset) == materialised.generated.days
    assert (
        materialised.lake.days(materialised.site.name, "als_model") == materialised.generated.days
    )
    recs = materialised.lake.read_partitions(
        materialised.site.name, "user_recommendations", materialised.generated.days
    )
    assert recs is not None and len(recs) > 1000
    assert (recs.groupby(["date", "user_id"])["rank"].max() <= 20).all()


def test_quarantined_lines_are_counted_exactly(materialised: Materialised) -> None:
    stats = materialised.generated.stats
    quarantine = materialised.lake.read_partitions(
        materialised.site.name, "quarantined_events", materialised.generated.days
    )
    assert quarantine is not None
    expected = Counter(stats.malformed) + Counter({"bot": stats.bot_events})
    assert Counter(quarantine["reason"]) == expected
    assert quarantine.duplicated(["source_file", "line_no", "reason"]).sum() == 0
    # Every line is accounted for: kept, duplicate, non-article or quarantined.
    # Each day's partition carries that day's own numbers; they add up to the run's lines.
    meta = per_day_totals(
        materialised,
        "raw_events",
        ["lines_read", "events", "duplicates", "non_article_events", "lines_unaccounted"],
    )
    assert meta["lines_read"] == stats.lines
    accounted = meta["events"] + meta["duplicates"] + meta["non_article_events"]
    assert accounted + len(quarantine) == stats.lines
    assert meta["duplicates"] == stats.duplicate_lines
    assert meta["lines_unaccounted"] == 0


def test_no_recommendation_of_an_article_the_reader_opened(materialised: Materialised) -> None:
    site = materialised.site
    events = materialised.lake.read_partitions(site.name, "raw_events", materialised.generated.days)
    recs = materialised.lake.read_partitions(
        site.name, "user_recommendations", materialised.generated.days
    )
    assert events is not None and recs is not None
    for day in materialised.generated.days:
        _, end = day_bounds(day, site.tz)
        opened = events.loc[events["ts"] < end, ["user_id", "article_id"]].drop_duplicates()
        served = recs.loc[recs["date"] == day, ["user_id", "article_id"]]
        clash = served.merge(opened, on=["user_id", "article_id"])
        assert clash.empty, f"{day}: {len(clash)} recommendations of opened articles"


def test_similar_articles_are_among_the_recently_read(materialised: Materialised) -> None:
    site = materialised.site
    day = materialised.generated.days[-1]
    similar = materialised.lake.read_partition(site.name, "similar_articles", day)
    events = materialised.lake.read_partition(site.name, "raw_events", day)
    assert similar is not None and events is not None and not similar.empty
    read_today = set(events["article_id"].dropna())
    # models.similar.recent_days = 1: lists and neighbours are articles read on the day, while
    # the ALS model knows the whole 28-day window.
    assert set(similar["article_id"]) <= read_today
    assert set(similar["similar_article_id"]) <= read_today
    model = load_als(materialised.lake, site, day)
    assert model is not None and len(set(model.article_ids) - read_today) > 0


def test_als_beats_random_on_a_next_day_holdout(materialised: Materialised) -> None:
    site = materialised.site
    days = materialised.generated.days
    train_day, test_day = days[-2], days[-1]
    events = materialised.lake.read_partitions(site.name, "raw_events", days)
    recs = materialised.lake.read_partition(site.name, "user_recommendations", train_day)
    assert events is not None and recs is not None
    views = events.loc[events["event_name"] == "page_view"]
    train = views.loc[views["date"] <= train_day]
    test = views.loc[views["date"] == test_day]
    truth = next_day_truth(train, test)
    assert len(truth) > 50
    served = {
        user: group.sort_values("rank")["article_id"].tolist()[:10]
        for user, group in recs.groupby("user_id")
    }
    ours = ranking_metrics({u: served.get(u, []) for u in truth}, truth, k=10)
    candidates = sorted(set(train["article_id"]))
    random = ranking_metrics(
        random_recommendations(list(truth), candidates, seen_articles(train), k=10, seed=3),
        truth,
        k=10,
    )
    assert ours.hit_rate > 2 * random.hit_rate
    assert ours.ndcg > 2 * random.ndcg


def test_rerunning_the_range_rewrites_identical_partitions(materialised: Materialised) -> None:
    before = {asset: lake_files(materialised, asset) for asset in PARTITIONED}
    current = {
        kind: materialised.publisher.current(materialised.site.name, kind)
        for kind in ("user", "article", "popular")
    }
    assert materialised.run(materialised.generated.days).success
    after = {asset: lake_files(materialised, asset) for asset in PARTITIONED}
    for asset in PARTITIONED:
        assert after[asset] == before[asset], f"{asset} changed on re-run"
    for kind, version in current.items():
        now = materialised.publisher.current(materialised.site.name, kind)
        assert version is not None and now is not None
        assert now.as_of == version.as_of and now.rows == version.rows and now.id > version.id


def test_an_as_of_moment_never_sees_later_events(materialised: Materialised) -> None:
    site = materialised.site
    day = materialised.generated.days[-1]
    start, _ = day_bounds(day, site.tz)
    as_of = start + pd.Timedelta(hours=13)
    raw = materialised.lake.read_partition(site.name, "raw_events", day)
    assert raw is not None and (raw["ts"] >= as_of).sum() > 100  # the cut is exercised
    downstream = "engagement,interactions,als_model,popular_articles,user_recommendations"
    result = materialised.run([day], selection=downstream, as_of=as_of.isoformat())
    assert result.success
    engagement = materialised.lake.read_partition(site.name, "engagement", day)
    interactions = materialised.lake.read_partition(site.name, "interactions", day)
    assert engagement is not None and interactions is not None
    assert engagement["last_ts"].max() < as_of
    assert interactions["last_ts"].max() < as_of
    recs = materialised.lake.read_partition(site.name, "user_recommendations", day)
    assert recs is not None
    later_only = set(raw.loc[raw["ts"] >= as_of, "user_id"]) - set(
        raw.loc[raw["ts"] < as_of, "user_id"]
    )
    assert later_only, "some readers first appear after the as-of moment"
    window = materialised.lake.read_partitions(
        site.name, "engagement", materialised.generated.days[:-1]
    )
    known = set(window["user_id"]) if window is not None else set()
    assert not (set(recs["user_id"]) & (later_only - known))
    # Restore the full day for the tests that follow.
    assert materialised.run([day], selection=downstream).success


def test_a_failed_publish_keeps_the_previous_recommendations_served(
    materialised: Materialised,
) -> None:
    site = materialised.site
    publisher = materialised.publisher
    before = {kind: publisher.current(site.name, kind) for kind in ("user", "article", "popular")}
    a_user = materialised.lake.read_partition(
        site.name, "user_recommendations", materialised.generated.days[-1]
    )
    assert a_user is not None
    user = str(a_user["user_id"].iloc[0])
    served_before = publisher.recommendations(site.name, "user", user, size=10)
    database = materialised.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON recommendation "
            "BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
        )
    try:
        result = materialised.run(
            [materialised.generated.days[-1]], selection="published_recommendations"
        )
        assert not result.success
    finally:
        with sqlite3.connect(database) as connection:
            connection.execute("DROP TRIGGER poison")
    for kind, version in before.items():
        now = publisher.current(site.name, kind)
        assert version is not None and now is not None and now.id == version.id
    pd.testing.assert_frame_equal(
        publisher.recommendations(site.name, "user", user, size=10), served_before
    )
    failed = [v for v in publisher.versions(site.name) if v.status == "failed"]
    assert failed and all("disk full" in (v.error or "") for v in failed)
    # The next run succeeds and replaces the current versions.
    assert materialised.run(
        [materialised.generated.days[-1]], selection="published_recommendations"
    ).success
    assert publisher.current(site.name, "user").id > before["user"].id  # type: ignore[union-attr]
