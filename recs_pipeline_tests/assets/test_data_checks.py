"""The non-blocking data checks: volume against the median, quarantine share, empty days."""

from __future__ import annotations

import dagster as dg
import pytest

from recs_pipeline.assets.data_checks import (
    DATA_CHECKS,
    empty_day_verdict,
    quarantine_verdict,
    volume_verdict,
)
from recs_pipeline_tests.conftest import Materialised


def test_volume_is_compared_with_the_median_of_earlier_days() -> None:
    ok, reason, numbers = volume_verdict(1000, [900, 1100, 0, 1000], ratio=3.0)
    assert ok and numbers["median"] == 1000 and "3 earlier days" in reason
    ok, reason, _ = volume_verdict(12, [4000, 4100, 3900], ratio=3.0)
    assert not ok and "12 events against a median of 4,000" in reason
    assert not volume_verdict(20_000, [4000, 4100, 3900], ratio=3.0)[0]  # a flood too
    assert volume_verdict(12, [4000, 4100], ratio=3.0, finished=False)[0]
    assert volume_verdict(12, [4000], ratio=3.0)[0]  # not enough history to judge


def test_quarantine_share_and_empty_days() -> None:
    assert quarantine_verdict(990, 10, limit=0.05)[0]
    ok, reason, numbers = quarantine_verdict(900, 100, limit=0.05)
    assert not ok and numbers["share"] == pytest.approx(0.1) and "10.00%" in reason
    assert not empty_day_verdict(0, 0)[0]
    assert empty_day_verdict(0, 0, finished=False)[0]
    assert empty_day_verdict(0, 3)[0]


def test_every_day_of_the_range_run_is_checked(materialised: Materialised) -> None:
    site = materialised.site.name
    keys = [dg.AssetCheckKey(dg.AssetKey([site, "raw_events"]), c.name) for c in DATA_CHECKS]
    infos = materialised.instance.event_log_storage.get_asset_check_partition_info(keys)
    days = set(materialised.generated.days)
    for key in keys:
        statuses = {
            info.partition_key: info.latest_execution_status.value
            for info in infos
            if info.check_key == key and info.partition_key in days
        }
        assert set(statuses) == days, key.name
        # The generated site has 1 % malformed lines, steady volume and no empty day.
        assert set(statuses.values()) == {"SUCCEEDED"}, (key.name, statuses)
