"""The publishing gate end to end: a model that fails a blocking check is not published.

Runs the site's last day again with a stricter gate on the session's materialised site: the
blocking check fails, ``published_recommendations`` is skipped, and the versions that were
current stay current and served. (The fixture's own gate is relaxed so the rest of the suite
publishes; these runs change nothing that the other tests read.)
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from recs_pipeline.definitions import build_definitions
from recs_pipeline_tests.conftest import Materialised

KINDS = ("user", "article", "popular")


def run_with_gate(materialised: Materialised, **gate: object) -> dg.ExecuteInProcessResult:
    site = materialised.site
    strict = site.model_copy(
        update={
            "models": site.models.model_copy(
                update={"gate": site.models.gate.model_copy(update=gate)}
            )
        }
    )
    definitions = build_definitions([strict], materialised.lake_url, materialised.database_url)
    job = definitions.resolve_implicit_global_asset_job_def()
    keys = [
        dg.AssetKey([site.name, name])
        for name in ("user_recommendations", "published_recommendations")
    ]
    return job.execute_in_process(
        instance=materialised.instance,
        partition_key=materialised.generated.days[-1],
        asset_selection=keys,
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }


def served(materialised: Materialised) -> tuple[dict[str, int], pd.DataFrame]:
    site = materialised.site
    versions = {}
    for kind in KINDS:
        current = materialised.publisher.current(site.name, kind)
        assert current is not None
        versions[kind] = current.id
    recs = materialised.lake.read_partition(
        site.name, "user_recommendations", materialised.generated.days[-1]
    )
    assert recs is not None
    user = str(recs.loc[recs["source"] == "ranker", "user_id"].iloc[0])
    return versions, materialised.publisher.recommendations(site.name, "user", user, size=10)


def test_a_model_that_does_not_beat_the_best_baseline_is_not_published(
    materialised: Materialised,
) -> None:
    versions, lists = served(materialised)
    result = run_with_gate(materialised, min_lift=10.0)
    assert not result.success
    checks = check_results(result)
    assert not checks["ranker_beats_best_baseline"].passed
    reason = checks["ranker_beats_best_baseline"].metadata["reason"].value
    assert "does not beat best baseline" in str(reason)
    assert checks["enough_readers_have_recommendations"].passed
    materialisations = [
        event.asset_key.path[-1] for event in result.get_asset_materialization_events()
    ]
    assert "published_recommendations" not in materialisations
    assert "user_recommendations" in materialisations
    after_versions, after_lists = served(materialised)
    assert after_versions == versions
    pd.testing.assert_frame_equal(after_lists, lists)


def test_low_coverage_or_too_few_readers_stop_the_publish(materialised: Materialised) -> None:
    versions, _ = served(materialised)
    result = run_with_gate(materialised, min_coverage=50.0, min_users=10**9)
    assert not result.success
    checks = check_results(result)
    assert not checks["coverage_above_floor"].passed
    assert "< floor 50" in str(checks["coverage_above_floor"].metadata["reason"].value)
    assert not checks["enough_readers_have_recommendations"].passed
    assert checks["ranker_beats_best_baseline"].passed  # the fixture's relaxed margin
    assert served(materialised)[0] == versions


def test_the_same_model_passes_the_site_gate_and_is_published(materialised: Materialised) -> None:
    versions, _ = served(materialised)
    result = run_with_gate(materialised)
    assert result.success
    assert all(evaluation.passed for evaluation in check_results(result).values())
    after, _ = served(materialised)
    assert all(after[kind] > versions[kind] for kind in KINDS)


def test_served_lists_that_do_not_beat_the_best_baseline_are_not_published(
    materialised: Materialised,
) -> None:
    versions, _ = served(materialised)
    result = run_with_gate(materialised, min_lift=5.0, min_group_lift=5.0)
    assert not result.success
    checks = check_results(result)
    verdict = checks["served_beats_best_baseline"]
    assert not verdict.passed
    reason = str(verdict.metadata["reason"].value)
    # The result names each group, the served score and the baseline it is compared with.
    assert "all (" in reason and "FAILS" in reason and "served" in reason
    assert "active (" in reason and "not gated: fewer than 1000 readers" in reason
    assert served(materialised)[0] == versions


def _evaluation(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "date": "2026-11-03",
                "protocol": "two_hour",
                "day": "2026-11-03",
                "slot": "2026-11-03T10:00:00+00:00",
                "group": group,
                "method": method,
                "users": users,
                "hit_rate": ndcg,
                "recall": ndcg,
                "ndcg": ndcg,
                "mrr": ndcg,
                "coverage": 0.1,
            }
            for group, method, users, ndcg in rows
        ]
    )


def test_served_verdict_gates_each_group_against_its_best_baseline(
    materialised: Materialised,
) -> None:
    from recs_pipeline.assets.checks import served_verdict

    site = materialised.site.model_copy(
        update={
            "models": materialised.site.models.model_copy(
                update={
                    "gate": materialised.site.models.gate.model_copy(
                        update={"min_lift": 0.0, "min_group_lift": 0.0, "min_group_readers": 100}
                    )
                }
            )
        }
    )
    winning = [
        ("all", "served", 1000, 0.40),
        ("all", "pop_decay_3m", 1000, 0.38),
        ("all", "als", 1000, 0.10),
        ("active", "served", 600, 0.42),
        ("active", "pop_decay_3m", 600, 0.40),
        ("no_history", "served", 50, 0.20),  # loses, but too few readers to gate
        ("no_history", "pop_decay_3m", 50, 0.30),
    ]
    ok, reason, numbers = served_verdict(site, _evaluation(winning), "2026-11-03")
    assert ok, reason
    assert "not gated" in reason and numbers["all_lift"] == pytest.approx(0.40 / 0.38)
    losing = [*winning, ("older", "served", 400, 0.30), ("older", "pop_decay_1h", 400, 0.33)]
    ok, reason, _ = served_verdict(site, _evaluation(losing), "2026-11-03")
    assert not ok and "older (400 readers)" in reason and "pop_decay_1h" in reason
    ok, reason, _ = served_verdict(site, None, "2026-11-03")
    assert ok and "no finished 2-hour slot" in reason


def test_a_run_stopped_only_by_the_gate_is_explained(materialised: Materialised) -> None:
    from recs_pipeline.gate_report import last_run_gate, served_instead

    result = run_with_gate(materialised, min_coverage=50.0)
    assert not result.success
    outcome = last_run_gate(materialised.instance, materialised.site.name)
    assert outcome is not None and outcome.run_id == result.run_id
    assert outcome.only_the_gate
    assert [name for name, _ in outcome.reasons] == ["coverage_above_floor"]
    assert "< floor 50" in outcome.reasons[0][1]
    lines = served_instead(materialised.publisher, materialised.site.name)
    assert len(lines) == 3 and all("stays current" in line for line in lines)
    # A run that fails elsewhere is not the gate's: nothing to explain away.
    assert last_run_gate(materialised.instance, "no-such-site") is None
