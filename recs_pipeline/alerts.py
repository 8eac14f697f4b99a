"""Alerts to a chat webhook (Slack-compatible JSON) when a run fails or a check fails.

The webhook URL comes from the environment (``RECS_ALERT_WEBHOOK_URL``) and is never logged or
put in metadata; without it the sensors skip, saying so. Two sensors:

- ``recs_run_failure_alert``: a run failed. The message names the run, its job and sites, the
  failed steps and, when the publishing gate stopped it, each failed check's reason (the
  versions already current stay served).
- ``recs_failed_check_alert``: a run succeeded but some asset check failed (a non-blocking data
  check): each failed check with its reason.

docs/operations.md ("Runbook") says what each alert means and what to do.
"""

from __future__ import annotations

import os

import dagster as dg
import httpx

__all__ = [
    "WEBHOOK_ENV",
    "build_alert_sensors",
    "failed_checks",
    "failure_message",
    "post_alert",
]

WEBHOOK_ENV = "RECS_ALERT_WEBHOOK_URL"


class AlertNotSent(RuntimeError):
    """The webhook did not take the alert (the message says why, never the URL)."""


def post_alert(text: str, url: str, timeout: float = 10.0) -> None:
    """POST ``{"text": text}`` (what Slack, Mattermost and most chat webhooks take)."""
    try:
        response = httpx.post(url, json={"text": text}, timeout=timeout)
    except httpx.HTTPError as error:
        raise AlertNotSent(f"alert webhook unreachable: {type(error).__name__}") from None
    if response.status_code >= 300:
        raise AlertNotSent(f"alert webhook answered HTTP {response.status_code}")


def failed_evaluations(records: list[dg.EventLogEntry]) -> list[dg.AssetCheckEvaluation]:
    """The failed check evaluations among a run's event log records."""
    out = []
    for record in records:
        event = record.dagster_event
        if event is None or event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        evaluation = event.asset_check_evaluation_data
        if not evaluation.passed:
            out.append(evaluation)
    return out


def reason_of(evaluation: dg.AssetCheckEvaluation) -> str:
    """What a check said: its ``reason`` metadata, else its description."""
    reason = evaluation.metadata.get("reason")
    return str(reason.value) if reason is not None else (evaluation.description or "")


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str, str]]:
    """(asset key [partition], check name, reason) of every failed check evaluation of a run."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [
        (
            evaluation.asset_key.to_user_string()
            + (f" [{evaluation.partition}]" if evaluation.partition else ""),
            evaluation.check_name,
            reason_of(evaluation),
        )
        for evaluation in failed_evaluations(list(records))
    ]


def _sites(run: dg.DagsterRun) -> list[str]:
    keys = run.asset_selection or set()
    return sorted({key.path[0] for key in keys if len(key.path) > 1})


def failure_message(
    run: dg.DagsterRun, failed_steps: list[str], checks: list[tuple[str, str, str]]
) -> str:
    sites = ", ".join(_sites(run)) or "unknown site"
    lines = [f":red_circle: recs_pipeline run {run.run_id} ({run.job_name}, {sites}) failed."]
    if failed_steps:
        lines.append("Failed steps: " + ", ".join(sorted(failed_steps)))
    if checks:
        lines.append("Failed checks (a blocking one keeps the current versions served):")
        lines.extend(f"- {asset} {name}: {reason}" for asset, name, reason in checks)
    lines.append("Runbook: docs/operations.md, section Runbook.")
    return "\n".join(lines)


def build_alert_sensors() -> list[dg.SensorDefinition]:
    @dg.run_failure_sensor(
        name="recs_run_failure_alert",
        description=f"Posts to the chat webhook in ${WEBHOOK_ENV} when a run fails.",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def run_failure_alert(context: dg.RunFailureSensorContext) -> dg.SkipReason | None:
        url = os.environ.get(WEBHOOK_ENV)
        if not url:
            return dg.SkipReason(f"{WEBHOOK_ENV} is not set: no alert sent")
        run = context.dagster_run
        steps = [str(event.step_key) for event in context.get_step_failure_events()]
        post_alert(failure_message(run, steps, failed_checks(context.instance, run.run_id)), url)
        context.log.info(f"alert sent for run {run.run_id}")
        return None

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="recs_failed_check_alert",
        description=f"Posts to the chat webhook in ${WEBHOOK_ENV} when a check fails in a run "
        "that succeeded (non-blocking checks).",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
    def failed_check_alert(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
        url = os.environ.get(WEBHOOK_ENV)
        run = context.dagster_run
        checks = failed_checks(context.instance, run.run_id)
        if not checks:
            return dg.SkipReason(f"run {run.run_id}: every check passed")
        if not url:
            return dg.SkipReason(f"{WEBHOOK_ENV} is not set: no alert sent")
        sites = ", ".join(_sites(run)) or "unknown site"
        lines = [f":warning: recs_pipeline run {run.run_id} ({sites}): checks failed."]
        lines.extend(f"- {asset} {name}: {reason}" for asset, name, reason in checks)
        lines.append("Runbook: docs/operations.md, section Runbook.")
        post_alert("\n".join(lines), url)
        context.log.info(f"check alert sent for run {run.run_id}")
        return None

    return [run_failure_alert, failed_check_alert]
