"""``recs recommend``: the lists of the user_recommendations asset, rebuilt from the lake."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recs_pipeline.cli import main
from recs_pipeline.core.timeframe import day_bounds
from recs_pipeline_tests.conftest import Materialised


@pytest.fixture
def environment(
    materialised: Materialised, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    sites = tmp_path / "sites"
    sites.mkdir()
    document = json.loads(materialised.site.model_dump_json())
    (sites / "testsite.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("RECS_SITES_DIR", str(sites))
    monkeypatch.setenv("RECS_LAKE_URL", materialised.lake_url)
    return tmp_path


def test_end_of_day_lists_are_the_assets_lists(
    materialised: Materialised, environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = materialised.site
    day = materialised.generated.days[-1]
    _, end = day_bounds(day, site.tz)
    out = environment / "recs.parquet"
    assert (
        main(["recommend", "--site", site.name, "--as-of", end.isoformat(), "--out", str(out)]) == 0
    )
    assert "ranker: yes" in capsys.readouterr().out
    cli = pd.read_parquet(out)
    assert list(cli.columns) == ["user_id", "rank", "article_id", "score"]
    asset = materialised.lake.read_partition(site.name, "user_recommendations", day)
    assert asset is not None
    key = ["user_id", "rank"]
    merged = cli.sort_values(key).reset_index(drop=True)
    expected = asset.sort_values(key).reset_index(drop=True)
    assert len(merged) == len(expected)
    assert (merged["article_id"] == expected["article_id"]).all()
    assert merged["score"].to_numpy() == pytest.approx(expected["score"].to_numpy())


def test_a_moment_inside_a_day_for_some_readers(
    materialised: Materialised, environment: Path
) -> None:
    site = materialised.site
    day = materialised.generated.days[-1]
    start, _ = day_bounds(day, site.tz)
    moment = start + pd.Timedelta(hours=15)
    events = materialised.lake.read_partitions(site.name, "raw_events", materialised.generated.days)
    assert events is not None
    before = events.loc[events["ts"] < moment]
    readers = sorted(set(before.loc[before["date"] == day, "user_id"]))[:5]
    users = environment / "users.txt"
    users.write_text("\n".join([*readers, "someone-new"]) + "\n")
    out = environment / "some.parquet"
    code = main(
        [
            "recommend",
            "--site",
            site.name,
            "--as-of",
            moment.isoformat(),
            "--users",
            str(users),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    recs = pd.read_parquet(out)
    assert set(recs["user_id"]) == {*readers, "someone-new"}
    assert (recs.groupby("user_id")["rank"].max() == site.models.per_user).all()
    opened = before[["user_id", "article_id"]].drop_duplicates()
    assert recs.merge(opened, on=["user_id", "article_id"]).empty


def test_unknown_site_is_refused(environment: Path) -> None:
    out = environment / "x.parquet"
    assert main(["recommend", "--site", "nope", "--as-of", "2026-11-05", "--out", str(out)]) == 2
    assert not out.exists()


def test_a_missing_raw_events_partition_is_named(
    materialised: Materialised, environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = materialised.site
    out = environment / "none.parquet"
    code = main(
        ["recommend", "--site", site.name, "--as-of", "2030-01-01T12:00:00Z", "--out", str(out)]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert f"{site.name}/raw_events/date=2030-01-01 is not in the lake" in error
    assert "dagster asset materialize" in error
    assert not out.exists()
