"""The Parquet lake on local disk: layout, atomic idempotent writes, artifacts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recs_pipeline.adapters.lake import lake_from_url


def frame(day: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"date": day, "user_id": [f"u{i}" for i in range(n)], "x": range(n)})


def test_partitions_are_hive_style_and_round_trip(tmp_path: Path) -> None:
    lake = lake_from_url(str(tmp_path))
    path = lake.write_partition("demo", "raw_events", "2026-11-10", frame("2026-11-10", 3))
    assert path == f"{tmp_path}/demo/raw_events/date=2026-11-10/part-0.parquet"
    back = lake.read_partition("demo", "raw_events", "2026-11-10")
    assert back is not None
    pd.testing.assert_frame_equal(back, frame("2026-11-10", 3), check_dtype=False)
    assert lake.days("demo", "raw_events") == ["2026-11-10"]


def test_rewriting_a_partition_replaces_it_byte_for_byte(tmp_path: Path) -> None:
    lake = lake_from_url(f"file://{tmp_path}")
    lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 5))
    first = Path(lake.partition_path("s", "a", "2026-11-10")).read_bytes()
    lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 5))
    assert Path(lake.partition_path("s", "a", "2026-11-10")).read_bytes() == first
    lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 2))
    back = lake.read_partition("s", "a", "2026-11-10")
    assert back is not None and len(back) == 2
    leftovers = [p.name for p in tmp_path.rglob(".tmp-*")]
    assert leftovers == []


def test_reading_a_window_skips_missing_days(tmp_path: Path) -> None:
    lake = lake_from_url(str(tmp_path))
    lake.write_partition("s", "a", "2026-11-09", frame("2026-11-09", 2))
    lake.write_partition("s", "a", "2026-11-11", frame("2026-11-11", 1))
    both = lake.read_partitions("s", "a", ["2026-11-11", "2026-11-10", "2026-11-09"])
    assert both is not None
    assert both["date"].tolist() == ["2026-11-09", "2026-11-09", "2026-11-11"]
    assert lake.read_partitions("s", "a", ["2026-01-01"]) is None


def test_artifacts_live_beside_partitions(tmp_path: Path) -> None:
    lake = lake_from_url(str(tmp_path))
    lake.write_artifact("s", "als_model", "2026-11-10", "model.npz", b"\x00\x01")
    assert lake.read_artifact("s", "als_model", "2026-11-10", "model.npz") == b"\x00\x01"
    assert lake.read_artifact("s", "als_model", "2026-11-11", "model.npz") is None
    assert lake.artifacts("s", "als_model", "2026-11-10") == ["model.npz"]
    assert lake.days("s", "als_model") == ["2026-11-10"]


def test_unsupported_lake_urls_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unsupported location"):
        lake_from_url("gs://bucket/x")
