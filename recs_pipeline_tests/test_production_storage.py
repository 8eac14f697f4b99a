"""The whole graph on production storage: landing files and the lake on S3 (moto's server),
the published tables and the asset tables on Postgres, the Dagster instance on Postgres.

Small generated data; every part is a real server on loopback.
"""

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest

from recs_pipeline import settings
from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.postgres_tables import PostgresTables
from recs_pipeline.adapters.publishing import PostgresPublisher, publisher_from_url
from recs_pipeline.automation import build_automation
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline.definitions import build_definitions
from recs_pipeline.postgres_io import MIRRORED_ASSETS, LakeAndTablesIOManager
from recs_pipeline.report import STAGES
from recs_pipeline_tests.conftest import site_config
from recs_pipeline_tests.servers import Bucket, scratch_database

FIRST = dt.date(2026, 11, 1)
DAYS = [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(3)]


def upload(bucket: Bucket, folder: Path, prefix: str) -> int:
    lake = lake_from_url(f"s3://{bucket.name}")
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with lake.fs.open_output_stream(
                f"{bucket.name}/{prefix}/{path.relative_to(folder).as_posix()}",
                compression=None,  # the bytes as they are: pyarrow would gzip a .gz name again
            ) as stream:
                stream.write(path.read_bytes())
            count += 1
    return count


@pytest.fixture
def postgres_instance(
    pg_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dg.DagsterInstance, str]]:
    """A Dagster instance from deploy/dagster.postgres.yaml on a database of its own."""
    with scratch_database(pg_server, prefix="recs_dagster") as url:
        parts = urlsplit(url)
        monkeypatch.setenv("DAGSTER_PG_HOST", parts.hostname or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_PORT", str(parts.port or 5432))
        monkeypatch.setenv("DAGSTER_PG_DB", parts.path.lstrip("/"))
        monkeypatch.setenv("DAGSTER_PG_USER", parts.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", parts.password or "")
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(
            settings.PROJECT_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml"
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance, url


def test_whole_graph_on_s3_and_postgres(
    tmp_path: Path,
    s3_bucket: Bucket,
    pg_url: str,
    postgres_instance: tuple[dg.DagsterInstance, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance, instance_url = postgres_instance
    landing = tmp_path / "landing"
    stats = generate(
        GeneratorConfig(
            start=FIRST, days=len(DAYS), users=300, articles_per_day=20, events_per_day=4000, seed=5
        ),
        landing,
    )
    assert upload(s3_bucket, landing, "landing/prod") > 0
    site = site_config("prod", landing)
    site = site.model_copy(
        update={
            "events": site.events.model_copy(
                update={"location": f"s3://{s3_bucket.name}/landing/prod"}
            )
        }
    )
    lake_url = f"s3://{s3_bucket.name}/lake"
    monkeypatch.setenv("RECS_DATABASE_URL", pg_url)
    definitions = build_definitions([site], lake_url)  # the database URL from the environment
    io_manager = definitions.resources["lake_io_manager"]
    assert isinstance(io_manager, LakeAndTablesIOManager)
    publisher_resource = definitions.resources["publisher"]
    assert isinstance(publisher_resource.url, dg.EnvVar)  # type: ignore[attr-defined]

    job = definitions.resolve_implicit_global_asset_job_def()
    tags = {
        "dagster/asset_partition_range_start": DAYS[0],
        "dagster/asset_partition_range_end": DAYS[-1],
    }
    first = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert first.success

    # The lake is on S3: every stage has every day.
    lake = lake_from_url(lake_url)
    for stage in STAGES:
        assert lake.days("prod", stage) == DAYS, stage
    keys = s3_bucket.object_keys("lake/")
    assert f"lake/prod/raw_events/date={DAYS[0]}/part-0.parquet" in keys
    assert not [k for k in keys if ".tmp-" in k]
    raw = lake.read_partitions("prod", "raw_events", DAYS)
    assert raw is not None and raw["event_id"].nunique() == len(raw) > 0
    assert stats.lines > len(raw)  # malformed, duplicate and bot lines stayed out

    # Published on Postgres: one current version per type, served from its partition.
    publisher = publisher_from_url(pg_url)
    assert isinstance(publisher, PostgresPublisher)
    current = {kind: publisher.current("prod", kind) for kind in ("user", "article", "popular")}
    assert all(v is not None and v.rows > 0 for v in current.values()), current
    recs = lake.read_partition("prod", "user_recommendations", DAYS[-1])
    assert recs is not None
    user = str(recs["user_id"].iloc[0])
    expected = recs.loc[recs["user_id"] == user].sort_values("rank")["article_id"].tolist()
    served = publisher.recommendations("prod", "user", user, size=len(expected))
    assert served["article_id"].tolist() == expected
    assert (served["model_id"] == current["user"].id).all()  # type: ignore[union-attr]

    # The serving-side frames are tables too, with the lake's rows per day.
    tables = PostgresTables(pg_url)

    def table_counts() -> dict[str, dict[str, int]]:
        return {asset: tables.row_counts("prod", asset) for asset in MIRRORED_ASSETS}

    counts = table_counts()
    for asset in MIRRORED_ASSETS:
        lake_counts = {day: lake.row_count("prod", asset, day) for day in DAYS}
        assert counts[asset] == {d: n for d, n in lake_counts.items() if n}, asset

    # The run and its materialisations are in the Postgres instance.
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert instance.get_materialized_partitions(
        dg.AssetKey(["prod", "published_recommendations"])
    ) == set(DAYS)
    with psycopg.connect(instance_url) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone()
    assert row == (1,)  # in the instance's own database

    # The same range backfilled again: identical row counts everywhere, nothing duplicated.
    lake_before = {s: [lake.row_count("prod", s, d) for d in DAYS] for s in STAGES}
    assert job.execute_in_process(instance=instance, tags=tags, raise_on_error=False).success
    assert table_counts() == counts
    assert {s: [lake.row_count("prod", s, d) for d in DAYS] for s in STAGES} == lake_before
    for kind, version in current.items():
        now = publisher.current("prod", kind)
        assert version is not None and now is not None and now.id > version.id
        assert now.rows == version.rows and now.as_of == version.as_of
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM model WHERE status = 'pending'").fetchone() == (
            0,
        )
        # Exactly one current per type, and every kept version has its partition.
        assert conn.execute("SELECT count(*) FROM model WHERE status = 'current'").fetchone() == (
            3,
        )
        orphans = conn.execute(
            "SELECT count(*) FROM model m WHERE m.status IN ('current', 'stale') AND "
            "to_regclass('recommendation_m' || m.id) IS NULL"
        ).fetchone()
        assert orphans == (0,)


def test_landing_sensor_watches_an_s3_prefix_with_a_cursor(
    tmp_path: Path, s3_bucket: Bucket
) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=FIRST, days=2, users=50, articles_per_day=5, events_per_day=300, seed=3
        ),
        landing,
    )
    day_one = landing / "2026" / "11" / "01"
    assert upload(s3_bucket, day_one, "landing/s/2026/11/01") > 0
    site = site_config("sensed", landing)
    site = site.model_copy(
        update={
            "events": site.events.model_copy(
                update={"location": f"s3://{s3_bucket.name}/landing/s"}
            )
        }
    )
    [sensor] = build_automation(site).sensors
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(first, dg.SensorResult)
        first_days = {r.partition_key for r in first.run_requests or []}
        assert first_days and first_days <= {"2026-10-31", "2026-11-01"}
        again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert isinstance(again, dg.SensorResult) and not again.run_requests
        upload(s3_bucket, landing / "2026" / "11" / "02", "landing/s/2026/11/02")
        later = sensor(dg.build_sensor_context(instance=instance, cursor=again.cursor))
        assert isinstance(later, dg.SensorResult)
        later_days = {r.partition_key for r in later.run_requests or []}
        assert "2026-11-02" in later_days
