"""Storage URLs come from the code location (the environment), never from a run's config.

Whoever can launch a run (the UI, or a web page that gets a browser to send a GraphQL
``launchRun``) must not be able to point the lake or the publisher at a server of their choosing.
A run config naming the lake's, the IO manager's or the publisher's settings is refused before
any step runs, and nothing reaches the other location; the clock stays run-configurable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline.definitions import build_definitions
from recs_pipeline_tests.conftest import FIRST_DAY, site_config

DAY = FIRST_DAY.isoformat()
INGEST = ["tiny/raw_events", "tiny/quarantined_events"]
PUBLISH = ["tiny/published_recommendations"]


def _tiny(tmp_path: Path) -> tuple[dg.Definitions, str, str]:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(start=FIRST_DAY, days=1, users=40, articles_per_day=6, events_per_day=400),
        landing,
    )
    lake_url = str(tmp_path / "lake")
    database_url = f"sqlite:///{tmp_path / 'recs.sqlite'}"
    return (
        build_definitions([site_config("tiny", landing)], lake_url, database_url),
        lake_url,
        database_url,
    )


def _run(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[str],
    run_config: dict[str, Any] | None,
) -> dg.ExecuteInProcessResult:
    job = definitions.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config=run_config,
        instance=instance,
        tags={"dagster/partition": DAY},
        asset_selection=[dg.AssetKey.from_user_string(key) for key in keys],
        raise_on_error=False,
    )


@pytest.mark.parametrize(
    ("resource", "field", "keys", "evil"),
    [
        ("lake", "url", INGEST, "evil_lake"),
        ("lake_io_manager", "url", INGEST, "evil_lake"),
        ("publisher", "url", PUBLISH, "evil.sqlite"),
    ],
)
def test_a_run_config_cannot_move_storage(
    tmp_path: Path, resource: str, field: str, keys: list[str], evil: str
) -> None:
    definitions, lake_url, _ = _tiny(tmp_path)
    elsewhere = tmp_path / "attacker" / evil
    value = f"sqlite:///{elsewhere}" if resource == "publisher" else str(elsewhere)
    run_config = {"resources": {resource: {"config": {field: value}}}}
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError) as refused:
            _run(definitions, instance, keys, run_config)
        message = str(refused.value)
        assert f'unexpected config entry "{field}"' in message
        assert f"root:resources:{resource}:config" in message
        # Refused before any run was recorded or any step ran.
        assert instance.get_runs() == []
    assert not (tmp_path / "attacker").exists()
    assert lake_from_url(lake_url).days("tiny", "raw_events") == []


def test_the_storage_settings_are_not_in_the_run_config_schema(tmp_path: Path) -> None:
    """Nothing of the lake's or the publisher's config is offered to a run (or shown in the UI)."""
    definitions, lake_url, database_url = _tiny(tmp_path)
    job = definitions.resolve_implicit_global_asset_job_def()
    resources = job.run_config_schema.config_type.fields["resources"].config_type.fields  # type: ignore[union-attr]
    for name in ("lake", "lake_io_manager", "publisher"):
        assert resources[name].config_type.fields["config"].config_type.fields == {}, name
    assert "as_of" in resources["clock"].config_type.fields["config"].config_type.fields
    # What the launchpad scaffolds for a run: no URL to see or edit.
    offered = str({name: resources[name].default_value for name in resources})
    assert lake_url not in offered and database_url not in offered


def test_a_postgres_url_from_the_environment_is_not_run_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Postgres the lake IO manager also mirrors tables: its database URL is fixed as well."""
    monkeypatch.setenv("RECS_DATABASE_URL", "postgresql://recs:s3cret@127.0.0.1:1/recs")
    definitions = build_definitions([site_config("tiny", tmp_path)], str(tmp_path / "lake"))
    job = definitions.resolve_implicit_global_asset_job_def()
    for resource, field in (("lake_io_manager", "database_url"), ("publisher", "url")):
        config = {"resources": {resource: {"config": {field: "postgresql://evil:1/x"}}}}
        with pytest.raises(
            dg.DagsterInvalidConfigError, match=f'unexpected config entry "{field}"'
        ):
            dg.validate_run_config(job, config)
    resources = job.run_config_schema.config_type.fields["resources"].config_type.fields  # type: ignore[union-attr]
    assert "s3cret" not in str({name: resources[name].default_value for name in resources})
    assert "RECS_DATABASE_URL" not in str(resources["publisher"].default_value)


def test_storage_from_the_definitions_still_works_and_the_clock_is_still_configurable(
    tmp_path: Path,
) -> None:
    definitions, lake_url, _ = _tiny(tmp_path)
    as_of = f"{DAY}T20:00:00+00:00"  # 17:00 on the site's day (America/Sao_Paulo)
    run_config = {"resources": {"clock": {"config": {"as_of": as_of}}}}
    with dg.instance_for_test() as instance:
        result = _run(definitions, instance, INGEST, run_config)
        assert result.success
    lake = lake_from_url(lake_url)
    assert lake.days("tiny", "raw_events") == [DAY]
    raw = lake.read_partition("tiny", "raw_events", DAY)
    assert raw is not None and len(raw) > 0
