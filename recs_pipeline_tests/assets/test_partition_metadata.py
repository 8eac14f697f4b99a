"""After one range run, every day's materialisation carries that day's own numbers."""

from __future__ import annotations

import dagster as dg

from recs_pipeline_tests.conftest import Materialised


def _metadata(materialised: Materialised, asset: str, day: str) -> dict[str, object]:
    records = materialised.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([materialised.site.name, asset]), asset_partitions=[day]
        ),
        limit=1,
        ascending=True,  # the range run's own materialisation, not a later re-run
    ).records
    assert records, f"{asset} {day} was never materialised"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {name: value.value for name, value in materialization.metadata.items()}


def test_each_day_of_a_range_run_carries_its_own_numbers(materialised: Materialised) -> None:
    days = materialised.generated.days[:-1]  # the last day is re-run by other tests
    lake = materialised.lake
    site = materialised.site.name
    for asset in (
        "raw_events",
        "pages",
        "engagement",
        "popular_articles",
        "similar_articles",
        "interactions",
        "user_recommendations",
    ):
        counts = [_metadata(materialised, asset, day)["dagster/row_count"] for day in days]
        assert counts == [lake.row_count(site, asset, day) for day in days], asset
        if asset != "popular_articles":  # top_n every day: equal counts are its own
            assert len(set(counts)) > 1, f"{asset}: every day shows the same number {counts}"
    users = [_metadata(materialised, "user_recommendations", day)["users"] for day in days]
    stored = [lake.read_partition(site, "user_recommendations", day) for day in days]
    assert users == [frame["user_id"].nunique() for frame in stored if frame is not None]
    trained = [_metadata(materialised, "ranker_model", day) for day in days]
    rows = [meta["training_rows"] for meta in trained if "training_rows" in meta]
    assert len(rows) >= 2 and len(set(rows)) > 1
    als = [_metadata(materialised, "als_model", day).get("interactions") for day in days]
    assert len({value for value in als if value is not None}) > 1


def test_each_day_of_a_range_run_has_its_own_gate_evaluation(materialised: Materialised) -> None:
    from recs_pipeline.assets.checks import GATE

    site = materialised.site.name
    keys = [
        dg.AssetCheckKey(dg.AssetKey([site, "user_recommendations"]), check.name) for check in GATE
    ]
    infos = materialised.instance.event_log_storage.get_asset_check_partition_info(keys)
    days = set(materialised.generated.days)
    for key in keys:
        statuses = {
            info.partition_key: info.latest_execution_status
            for info in infos
            if info.check_key == key and info.partition_key in days
        }
        # Every day was evaluated (none left "planned", which the UI shows as failed).
        assert set(statuses) == days, key.name
        assert all(status.value in ("SUCCEEDED", "FAILED") for status in statuses.values()), (
            key.name,
            statuses,
        )
