"""Why the last run of a site did not publish: its gate, read back from the Dagster instance.

A blocked publish is a correct outcome (the previous versions stay served), so ``make run`` asks
this module whether a failed materialisation failed *only* at the gate: then it prints the
gate's reasons and what readers are served instead, and the run counts as done.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from recs_pipeline.adapters.publishing import Publisher
from recs_pipeline.alerts import failed_evaluations, reason_of
from recs_pipeline.assets.checks import GATE

__all__ = ["GateOutcome", "last_run_gate"]


@dataclass(frozen=True)
class GateOutcome:
    run_id: str
    #: Steps that failed in the run, and those of them that are gate checks.
    failed_steps: frozenset[str]
    gate_steps: frozenset[str]
    #: (check name, reason) of every failed gate check.
    reasons: tuple[tuple[str, str], ...]

    @property
    def only_the_gate(self) -> bool:
        return bool(self.failed_steps) and self.failed_steps <= self.gate_steps


def last_run_gate(instance: dg.DagsterInstance, site: str) -> GateOutcome | None:
    """The newest run that touched the site's ``user_recommendations``, as a gate outcome."""
    gate_steps = frozenset(f"{site}__user_recommendations_{check.name}" for check in GATE)
    for run in instance.get_runs(limit=20):
        records = instance.all_logs(run.run_id)
        steps = {record.step_key for record in records if record.step_key}
        if not steps & (gate_steps | {f"{site}__user_recommendations"}):
            continue
        failed = frozenset(
            str(record.step_key)
            for record in records
            if record.dagster_event is not None
            and record.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
        )
        # Blocking failures only: a day a range run does not publish is reported, not gated.
        reasons = tuple(
            (evaluation.check_name, reason_of(evaluation))
            for evaluation in failed_evaluations(list(records))
            if evaluation.asset_key.path[0] == site and evaluation.blocking
        )
        return GateOutcome(run.run_id, failed, gate_steps, reasons)
    return None


def served_instead(publisher: Publisher, site: str) -> list[str]:
    """One line per model type: the version that stays served, or that none is yet."""
    lines = []
    for kind in ("user", "article", "popular"):
        current = publisher.current(site, kind)
        lines.append(
            f"  {kind}: version {current.id} as of {current.as_of:%Y-%m-%d %H:%M} UTC stays current"
            if current is not None
            else f"  {kind}: no version published yet (the serving API answers with popular lists)"
        )
    return lines
