"""Alerts reach a chat webhook (a real HTTP receiver on loopback) when a run or a check fails."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from pytest_httpserver import HTTPServer

from recs_pipeline.alerts import WEBHOOK_ENV, AlertNotSent, build_alert_sensors, post_alert


@dg.asset(key=["news", "broken"])
def broken() -> None:
    raise ValueError("landing folder /data/news does not exist")


@dg.asset(key=["news", "fine"])
def fine() -> int:
    return 1


@dg.asset_check(asset=fine, name="volume_near_median", blocking=False)
def volume_near_median() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, metadata={"reason": "12 events today against a median of 4,000"}
    )


def _sensor(name: str) -> dg.SensorDefinition:
    return next(sensor for sensor in build_alert_sensors() if sensor.name == name)


def _context(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType):  # type: ignore[no-untyped-def]
    run = instance.get_run_by_id(run_id)
    assert run is not None
    event = instance.all_logs(run_id, of_type=kind)[0].dagster_event
    assert event is not None
    return dg.build_run_status_sensor_context(
        sensor_name="test", dagster_event=event, dagster_instance=instance, dagster_run=run
    )


def test_a_failed_run_posts_its_steps_and_the_reason(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    url = httpserver.url_for("/hook")
    with dg.instance_for_test() as instance:
        result = dg.materialize([broken], instance=instance, raise_on_error=False)
        assert not result.success
        context = _context(instance, result.run_id, dg.DagsterEventType.RUN_FAILURE)
        sensor = _sensor("recs_run_failure_alert")
        monkeypatch.delenv(WEBHOOK_ENV, raising=False)
        skipped = sensor(context.for_run_failure())  # type: ignore[operator]
        assert isinstance(skipped, dg.SkipReason) and WEBHOOK_ENV in str(skipped.skip_message)
        assert not httpserver.log
        monkeypatch.setenv(WEBHOOK_ENV, url)
        sensor(context.for_run_failure())  # type: ignore[operator]
    ((request, _),) = httpserver.log
    text = json.loads(request.data)["text"]
    assert result.run_id in text and "news__broken" in text and "news" in text
    assert url not in text


def test_a_failed_check_in_a_successful_run_posts_its_reason(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    monkeypatch.setenv(WEBHOOK_ENV, httpserver.url_for("/hook"))
    with dg.instance_for_test() as instance:
        result = dg.materialize([fine, volume_near_median], instance=instance)
        assert result.success
        context = _context(instance, result.run_id, dg.DagsterEventType.RUN_SUCCESS)
        _sensor("recs_failed_check_alert")(context)  # type: ignore[operator]
    ((request, _),) = httpserver.log
    text = json.loads(request.data)["text"]
    assert "volume_near_median" in text and "median of 4,000" in text


def test_a_webhook_that_refuses_is_an_error_without_its_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/secret-token-path", method="POST").respond_with_data(
        "no", status=500
    )
    url = httpserver.url_for("/secret-token-path")
    with pytest.raises(AlertNotSent) as error:
        post_alert("x", url)
    assert "500" in str(error.value) and "secret-token-path" not in str(error.value)
