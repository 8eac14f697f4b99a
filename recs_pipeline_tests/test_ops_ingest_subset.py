"""`dagster asset materialize --select <site>/raw_events` (or the quarantine alone) works, as a
user types it, and the unselected half of the ingest is still written from the same read."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from recs_pipeline import settings
from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline_tests.conftest import site_config

DAGSTER = Path(sys.executable).parent / "dagster"
MATERIALIZE = [str(DAGSTER), "asset", "materialize", "-m", "recs_pipeline.definitions"]


def test_either_ingest_output_can_be_selected_alone_and_both_are_written(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=dt.date(2026, 11, 1),
            days=2,
            users=300,
            articles_per_day=20,
            events_per_day=2000,
            malformed_share=0.02,
            seed=9,
        ),
        landing,
    )
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "sub.yaml").write_text(site_config("sub", landing).model_dump_json())
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(settings.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    lake_url = str(tmp_path / "lake")
    env = {
        **os.environ,
        "RECS_SITES_DIR": str(sites),
        "RECS_LAKE_URL": lake_url,
        "RECS_DATABASE_URL": f"sqlite:///{tmp_path / 'recs.sqlite'}",
        "DAGSTER_HOME": str(home),
    }
    _initialise(home)
    launches = {"2026-11-01": "sub/raw_events", "2026-11-02": "sub/quarantined_events"}
    processes = {
        day: subprocess.Popen(
            [*MATERIALIZE, "--select", selection, "--partition", day],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day, selection in launches.items()
    }
    for process in processes.values():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]

    lake = lake_from_url(lake_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in launches:
            events = lake.read_partition("sub", "raw_events", day)
            quarantine = lake.read_partition("sub", "quarantined_events", day)
            assert events is not None and quarantine is not None, day
            assert len(events) > 1000 and len(quarantine) > 0, day
            for asset, rows in (
                ("raw_events", len(events)),
                ("quarantined_events", len(quarantine)),
            ):
                materialized = instance.get_materialized_partitions(dg.AssetKey(["sub", asset]))
                assert day in materialized, (asset, day)
                latest = _materialization(instance, ["sub", asset], day)
                # Each day carries its own row count, whichever output was selected.
                assert latest["dagster/row_count"] == rows, (asset, day)
        # The selected output's per-day numbers account for the unselected one's rows.
        day_one = _materialization(instance, ["sub", "raw_events"], "2026-11-01")
        quarantined = lake.read_partition("sub", "quarantined_events", "2026-11-01")
        assert quarantined is not None
        assert day_one["quarantined"] == len(quarantined)


def _initialise(home: Path) -> None:
    """Create the instance's SQLite storages once before the two concurrent launches: two
    processes creating a fresh instance at the same moment can both stamp its schema version
    (Dagster's alembic migration is not safe to race) and one fails on the unique key."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.event_log_storage.get_asset_records()
        instance.all_instigator_state()


def _materialization(instance: dg.DagsterInstance, asset: list[str], day: str) -> dict[str, object]:
    """The metadata values of an asset partition's newest materialisation."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    assert records, (asset, day)
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {name: value.value for name, value in materialization.metadata.items()}
