"""Schedules and the landing-file sensor: what they request, and only once."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg

from recs_pipeline.adapters.sources import LandingFile
from recs_pipeline.automation import build_automation, new_landing_files, refresh_request
from recs_pipeline.definitions import build_definitions
from recs_pipeline_tests.conftest import site_config


def test_the_cursor_reports_each_file_once_even_within_one_second() -> None:
    first = [LandingFile("a", 1, 100.0), LandingFile("b", 1, 100.0)]
    fresh, cursor = new_landing_files(first, None)
    assert [f.path for f in fresh] == ["a", "b"]
    fresh, cursor = new_landing_files(first, cursor)
    assert fresh == []
    later = [*first, LandingFile("c", 1, 100.0), LandingFile("d", 1, 101.0)]
    fresh, cursor = new_landing_files(later, cursor)
    assert [f.path for f in fresh] == ["c", "d"]
    assert len(json.loads(cursor)["files"]) == 4
    assert new_landing_files(later, cursor)[0] == []
    # A cursor of the earlier watermark form is read: nothing at or before it is reported again.
    old = json.dumps({"mtime": 100.0, "paths": ["a", "b", "c"]})
    assert [f.path for f in new_landing_files(later, old)[0]] == ["d"]


def test_a_refresh_tick_asks_for_its_day_as_of_the_tick(tmp_path: Path) -> None:
    site = site_config("s", tmp_path)
    tick = dt.datetime(2026, 11, 3, 14, 0, tzinfo=dt.UTC)  # 11:00 in Sao Paulo
    request = refresh_request(site, tick)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-11-03"
    assert (
        request.run_config["resources"]["clock"]["config"]["as_of"] == "2026-11-03T14:00:00+00:00"
    )
    midnight = dt.datetime(2026, 11, 4, 3, 0, tzinfo=dt.UTC)  # 00:00 local: the day that ended
    request = refresh_request(site, midnight)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2026-11-03"
    assert isinstance(refresh_request(site, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), dg.SkipReason)


def test_the_sensor_requests_the_days_of_new_files_once(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    site = site_config("s", landing)
    definitions = build_definitions([site], str(tmp_path / "lake"), "sqlite:///:memory:")
    sensor = definitions.get_sensor_def("s__landing_files")

    def drop(hour: str) -> None:
        folder = landing / hour
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "events-0000.json.gz"
        path.write_bytes(b"")
        os.utime(path, (1_790_000_000, 1_790_000_000))  # settled (written a while ago)

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=definitions)
        result = sensor.evaluate_tick(context)
        assert not result.run_requests
        assert result.skip_message is not None and str(landing) in result.skip_message
        landing.mkdir()
        result = sensor.evaluate_tick(context)
        assert not result.run_requests and result.skip_message == "no new landing files"
        drop("2026/11/02/15")  # midday of Nov 2nd in Sao Paulo
        result = sensor.evaluate_tick(context)
        assert [r.partition_key for r in result.run_requests] == ["2026-11-02"]
        cursor = result.cursor
        again = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
        )
        assert not again.run_requests
        drop("2026/11/03/03")  # 00:00 local on Nov 3rd: may hold late events of Nov 2nd
        later = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
        )
        assert sorted(r.partition_key for r in later.run_requests) == ["2026-11-02", "2026-11-03"]
        assert len({r.run_key for r in later.run_requests}) == 2


def test_jobs_and_schedules_are_named_per_site(tmp_path: Path) -> None:
    automation = build_automation(site_config("s", tmp_path))
    assert {job.name for job in automation.jobs} == {"s__ingest", "s__refresh"}
    assert {s.name for s in automation.schedules} == {"s__refresh_schedule", "s__ingest_schedule"}
    refresh = next(s for s in automation.schedules if s.name == "s__refresh_schedule")
    assert refresh.cron_schedule == "0 */2 * * *"
    assert refresh.execution_timezone == "America/Sao_Paulo"
