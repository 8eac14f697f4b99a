"""The publishing gate: blocking checks on ``user_recommendations``.

A failed check stops ``published_recommendations`` in the same run, so the versions already
``current`` in the serving database stay served; the check's result says why. Four checks:

- ``served_beats_best_baseline``: what readers are served, scored by ``recommendation_evaluation``
  for every test reader (2-hour protocol, the day's finished slots, or the previous day's when
  none has finished yet), must be at least the best baseline's NDCG@10 x (1 +
  ``models.gate.min_lift``), tuned ``pop_decay`` half-lives included, and in every reader group
  (active, older, no_history) with at least ``min_group_readers`` test readers at least that
  group's best baseline x (1 + ``min_group_lift``). The result lists every group.
- ``ranker_beats_best_baseline``: the new ranker's NDCG@10 on the held-out 2-hour slots of its
  training run must be at least the best baseline's x (1 + ``models.gate.min_lift``). When the
  lists come from the fallback (no ranker that day, or the ranker switched off) there is no new
  model to gate and the check passes, saying so.
- ``coverage_above_floor``: the served model's validation coverage (distinct recommended articles
  / distinct articles read, as in evaluation.md) is at least ``models.gate.min_coverage``.
- ``enough_readers_have_recommendations``: the share of the window's readers with a list is at
  least ``models.gate.min_user_share`` (and at least ``models.gate.min_users`` readers).

Every check evaluates each day of the run (each day's evaluation is recorded on its partition);
a range passes when every day it publishes (the newest ``publish.keep_versions``) does: older
days of a backfill never reach readers, so their verdicts are reported as warnings.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import dagster as dg
import pandas as pd

# Not exported by dagster; the per-day evaluations need it (see _latest_materialization).
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.adapters.model_store import ranker_info
from recs_pipeline.assets.common import daily_partitions, key
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.evaluation import ALL, best_baseline, summarise
from recs_pipeline.core.serving import GROUPS
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import window_days
from recs_pipeline.resources import LakeResource

DayVerdict = tuple[bool, str, dict[str, float]]


def _served_by_ranker(lake: Lake, site: SiteConfig, day: str) -> bool | None:
    """Whether a day's lists came from the ranker; None when the day has no lists."""
    recs = lake.read_partition(site.name, names.USER_RECOMMENDATIONS, day, columns=["source"])
    if recs is None or recs.empty:
        return None
    return bool((recs["source"] == "ranker").any())


def ranker_verdict(
    site: SiteConfig, info: dict[str, Any] | None, ranked: bool | None
) -> DayVerdict:
    """Whether the served model beats the best baseline by the margin, and why (pure)."""
    margin = site.models.gate.min_lift
    if not ranked:
        reason = (info or {}).get("reason", "no ranker for this day")
        return True, f"fallback (ALS/popular) served, no new model to gate: {reason}", {}
    validation: dict[str, dict[str, float]] = (info or {}).get("validation", {})
    ranker = validation.get("ranker")
    # The one rule of which baseline is best (core.evaluation.best_baseline), over the
    # validation's methods.
    table = pd.DataFrame(
        [
            {"protocol": "validation", "method": name, "ndcg": float(metrics["ndcg"])}
            for name, metrics in validation.items()
            if "ndcg" in metrics
        ],
        columns=["protocol", "method", "ndcg"],
    )
    top = best_baseline(table, "validation")
    if not ranker or top is None or not ranker.get("users"):
        return False, "the ranker has no validation on held-out readers: cannot show it wins", {}
    best_name = str(top["method"])
    best = validation[best_name]
    required = best["ndcg"] * (1.0 + margin)
    numbers = {
        "ranker_ndcg": float(ranker["ndcg"]),
        "best_baseline_ndcg": float(best["ndcg"]),
        "required_ndcg": float(required),
        "lift": float(ranker["ndcg"]) / best["ndcg"] if best["ndcg"] else float("inf"),
        "validation_users": float(ranker["users"]),
    }
    passed = ranker["ndcg"] >= required
    verb = "beats" if passed else "does not beat"
    reason = (
        f"ranker NDCG@10 {ranker['ndcg']:.4f} {verb} best baseline {best_name} "
        f"{best['ndcg']:.4f} x (1 + {margin:g}) = {required:.4f} "
        f"on {int(ranker['users'])} held-out readers"
    )
    return bool(passed), reason, numbers


def served_verdict(site: SiteConfig, evaluation: pd.DataFrame | None, day: str) -> DayVerdict:
    """Whether the served lists beat the best baseline overall and in each group (pure)."""
    gate = site.models.gate
    rows = None if evaluation is None else evaluation.loc[evaluation["protocol"] == "two_hour"]
    if rows is None or rows.empty:
        return True, f"{day}: no finished 2-hour slot evaluated yet, nothing to compare", {}
    summary = summarise(rows)
    served = summary.loc[summary["method"] == "served"]
    scores = dict(zip(served["group"], served["ndcg"].astype(float), strict=True))
    counts = dict(zip(served["group"], served["users"].astype(int), strict=True))
    if served.empty:
        return False, f"{day}: the evaluation has no score for the served lists", {}
    parts: list[str] = []
    numbers: dict[str, float] = {}
    passed = True
    for group in (ALL, *GROUPS):
        best = best_baseline(summary, "two_hour", group)
        if group not in scores or best is None:
            continue
        ndcg, readers = scores[group], counts[group]
        lift = ndcg / float(best["ndcg"]) if float(best["ndcg"]) else float("inf")
        margin = gate.min_lift if group == ALL else gate.min_group_lift
        gated = group == ALL or readers >= gate.min_group_readers
        ok = lift >= 1.0 + margin or not gated
        passed &= ok
        numbers[f"{group}_served_ndcg"] = ndcg
        numbers[f"{group}_best_baseline_ndcg"] = float(best["ndcg"])
        numbers[f"{group}_lift"] = lift
        numbers[f"{group}_readers"] = float(readers)
        verdict = "ok" if ok else "FAILS"
        if not gated:
            verdict = f"not gated: fewer than {gate.min_group_readers} readers"
        parts.append(
            f"{group} ({readers} readers): served {ndcg:.4f} vs {best['method']} "
            f"{float(best['ndcg']):.4f} = {lift:.3f}x, need >= {1.0 + margin:.3f}x: {verdict}"
        )
    days = ", ".join(sorted(set(rows["date"].astype(str)))) if "date" in rows else day
    reason = f"2-hour NDCG@10 on {days}: " + "; ".join(parts)
    return bool(passed), reason, numbers


def coverage_verdict(
    site: SiteConfig, info: dict[str, Any] | None, ranked: bool | None
) -> DayVerdict:
    floor = site.models.gate.min_coverage
    validation: dict[str, dict[str, float]] = (info or {}).get("validation", {})
    if not ranked:
        # Popularity (or ALS where it won its group) serves: no new model whose coverage
        # could regress; the served lists' own quality is served_beats_best_baseline's.
        return True, "no ranker served: no new model's coverage to gate", {}
    method = "ranker"
    metrics = validation.get(method)
    if not metrics or not metrics.get("users"):
        return False, "the ranker has no validation coverage", {}
    coverage = float(metrics["coverage"])
    passed = coverage >= floor
    reason = (
        f"{method} coverage {coverage:.3f} {'>=' if passed else '<'} floor {floor:g} "
        f"(distinct recommended / distinct read, held-out 2-hour slots)"
    )
    return passed, reason, {"coverage": coverage, "floor": floor}


def readers_verdict(site: SiteConfig, recs: pd.DataFrame | None, readers: int) -> DayVerdict:
    gate = site.models.gate
    users = 0 if recs is None or recs.empty else int(recs["user_id"].nunique())
    share = users / readers if readers else 0.0
    passed = users >= gate.min_users and (readers == 0 or share >= gate.min_user_share)
    reason = (
        f"{users} of {readers} readers of the window have a list ({share:.1%}); "
        f"need >= {gate.min_user_share:.0%} and >= {gate.min_users}"
    )
    return passed, reason, {"users": float(users), "readers": float(readers), "share": share}


def _latest_materialization(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, day: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The day's newest materialisation, which the day's evaluation is about: without it the
    UI does not count the evaluation as current for that partition (its Partitions tab would
    list every day as missing)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day]), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )


def combine_days(
    context: dg.AssetCheckExecutionContext,
    verdict: Callable[[str], DayVerdict],
    keep_versions: int | None = None,
    blocking: bool = True,
) -> dg.AssetCheckResult:
    """One check's result over the run's days, each day also recorded on its own partition.

    ``keep_versions``: only the newest that many days are gated (the days a run publishes);
    None gates every day. A non-blocking check reports with WARN severity.
    """
    days = (
        sorted(context.partition_keys)
        if context.has_partition_key_range or context.has_partition_key
        else []
    )
    results = {day: verdict(day) for day in days}
    # Only the days this run publishes reach readers (published_recommendations writes the
    # newest keep_versions of a range): older days of a backfill are reported, not gated.
    gated = set(days[-keep_versions:] if keep_versions else days)
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    if not context.has_partition_key:
        # A range run: each day gets its own evaluation, or the UI would list every day of a
        # passing check as failed (the run-level result below names no partition).
        check_key = context.check_specs[0].key
        for day, (ok, reason, numbers) in results.items():
            # log_event handles check evaluations; its annotation (UserEvent) omits them.
            context.op_execution_context.log_event(
                dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=ok,
                    metadata={
                        "reason": dg.MetadataValue.text(reason),
                        **{name: dg.MetadataValue.float(float(v)) for name, v in numbers.items()},
                    },
                    target_materialization_data=_latest_materialization(
                        context, check_key.asset_key, day
                    ),
                    severity=severity if day in gated else dg.AssetCheckSeverity.WARN,
                    description=reason
                    if ok or day in gated
                    else f"not published, not gated: {reason}",
                    blocking=blocking and day in gated,
                    partition=day,
                )
            )
    failed = [day for day, (ok, _, _) in results.items() if not ok and day in gated]
    shown = failed[-1] if failed else (days[-1] if days else None)
    numbers = results[shown][2] if shown else {}
    lines = "\n".join(
        f"- {day}: {'pass' if ok else '**FAIL**' if day in gated else 'fails, not published'}: "
        f"{reason}"
        for day, (ok, reason, _) in results.items()
    )
    return dg.AssetCheckResult(
        passed=not failed,
        severity=severity,
        description=results[shown][1] if shown else "no day to check",
        metadata={
            "days_failed": dg.MetadataValue.int(len(failed)),
            "reason": dg.MetadataValue.text(results[shown][1] if shown else ""),
            "days": dg.MetadataValue.md(lines or "_none_"),
            **{name: dg.MetadataValue.float(float(value)) for name, value in numbers.items()},
        },
    )


def _ranker_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    return ranker_verdict(site, ranker_info(lake, site, day), _served_by_ranker(lake, site, day))


def _coverage_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    return coverage_verdict(site, ranker_info(lake, site, day), _served_by_ranker(lake, site, day))


def _served_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    """The day's evaluation, or the previous day's while none of the day's slots has ended."""
    for evaluated in (day, window_days(day, 2)[0]):
        frame = lake.read_partition(site.name, names.RECOMMENDATION_EVALUATION, evaluated)
        if frame is not None and (frame["protocol"] == "two_hour").any():
            return served_verdict(site, frame, evaluated)
    return served_verdict(site, None, day)


def _readers_day(lake: Lake, site: SiteConfig, day: str) -> DayVerdict:
    recs = lake.read_partition(site.name, names.USER_RECOMMENDATIONS, day, columns=["user_id"])
    engagement = lake.read_partitions(
        site.name,
        names.ENGAGEMENT,
        window_days(day, site.engagement.window_days),
        columns=["user_id"],
    )
    readers = (
        int(engagement["user_id"].nunique()) if engagement is not None and len(engagement) else 0
    )
    return readers_verdict(site, recs, readers)


@dataclass(frozen=True)
class DayCheck:
    """One check: its name and description in the UI, and a day's verdict."""

    name: str
    description: str
    day_verdict: Callable[[Lake, SiteConfig, str], DayVerdict]
    #: What the verdict reads besides the checked asset (dependencies of the check).
    reads: tuple[str, ...] = ()


GATE: Final = (
    DayCheck(
        "served_beats_best_baseline",
        "What readers are served beats the best baseline (tuned pop_decay included), overall and "
        "in every reader group.",
        _served_day,
        reads=(names.RECOMMENDATION_EVALUATION,),
    ),
    DayCheck(
        "ranker_beats_best_baseline",
        "The ranker's held-out NDCG@10 beats the best baseline by the site's margin.",
        _ranker_day,
        reads=(names.RANKER_MODEL,),
    ),
    DayCheck(
        "coverage_above_floor",
        "The served model's validation coverage is above the site's floor.",
        _coverage_day,
        reads=(names.RANKER_MODEL,),
    ),
    DayCheck(
        "enough_readers_have_recommendations",
        "Enough of the window's readers have a list.",
        _readers_day,
    ),
)


def day_check(
    site: SiteConfig,
    asset: str,
    check: DayCheck,
    blocking: bool,
    keep_versions: int | None = None,
) -> dg.AssetChecksDefinition:
    """A partitioned check on one of the site's assets: ``check``'s verdict on each day of the
    run (the gate's checks are blocking; the data checks are not)."""

    @dg.asset_check(
        asset=key(site, asset),
        name=check.name,
        blocking=blocking,
        partitions_def=daily_partitions(site),
        additional_deps=[key(site, name) for name in check.reads] or None,
        description=check.description,
    )
    def evaluate(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        store = lake.lake()
        return combine_days(
            context, lambda day: check.day_verdict(store, site, day), keep_versions, blocking
        )

    return evaluate


def build_gate_checks(site: SiteConfig) -> list[dg.AssetChecksDefinition]:
    return [
        day_check(site, names.USER_RECOMMENDATIONS, check, True, site.publish.keep_versions)
        for check in GATE
    ]
