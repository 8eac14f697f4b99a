"""The lake on S3 (moto's server on loopback): layout, whole-object writes, idempotency, ranges."""

import threading

import dagster as dg
import pandas as pd
import pyarrow.fs as pafs
import pytest

from recs_pipeline.adapters.filesystems import resolve
from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.resources import LakeIOManager
from recs_pipeline_tests.servers import Bucket


def frame(day: str, n: int, tag: str = "x") -> pd.DataFrame:
    return pd.DataFrame({"date": day, "user_id": [f"{tag}{i}" for i in range(n)], "x": range(n)})


def test_s3_url_resolves_from_the_aws_variables(s3_bucket: Bucket) -> None:
    filesystem, base = resolve(f"s3://{s3_bucket.name}/lake/")
    assert isinstance(filesystem, pafs.S3FileSystem)
    assert base == f"{s3_bucket.name}/lake"
    with filesystem.open_output_stream(f"{base}/probe") as stream:
        stream.write(b"hello")
    assert s3_bucket.object_keys() == ["lake/probe"]  # the bytes went to the loopback endpoint


def test_partitions_round_trip_on_s3_with_one_object_each(s3_bucket: Bucket) -> None:
    lake = lake_from_url(f"s3://{s3_bucket.name}/lake")
    path = lake.write_partition("demo", "raw_events", "2026-11-10", frame("2026-11-10", 3))
    assert path == f"{s3_bucket.name}/lake/demo/raw_events/date=2026-11-10/part-0.parquet"
    assert lake.uri(path) == f"s3://{path}"
    back = lake.read_partition("demo", "raw_events", "2026-11-10")
    assert back is not None
    pd.testing.assert_frame_equal(back, frame("2026-11-10", 3), check_dtype=False)
    assert lake.row_count("demo", "raw_events", "2026-11-10") == 3
    assert lake.days("demo", "raw_events") == ["2026-11-10"]
    # Written in place: no temporary object, no copy, no folder markers.
    assert s3_bucket.object_keys() == ["lake/demo/raw_events/date=2026-11-10/part-0.parquet"]


def test_rewriting_on_s3_is_idempotent_and_replaces_whole(s3_bucket: Bucket) -> None:
    lake = lake_from_url(f"s3://{s3_bucket.name}/lake")

    def raw() -> bytes:
        with lake.fs.open_input_stream(lake.partition_path("s", "a", "2026-11-10")) as f:
            return bytes(f.read())

    lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 5))
    first = raw()
    lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 5))
    assert raw() == first
    lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 2))
    back = lake.read_partition("s", "a", "2026-11-10")
    assert back is not None and len(back) == 2
    assert len(s3_bucket.object_keys()) == 1


def test_readers_see_the_old_or_the_new_partition_never_a_part(s3_bucket: Bucket) -> None:
    lake = lake_from_url(f"s3://{s3_bucket.name}/lake")
    versions = {n: frame("2026-11-10", n, tag=f"v{n}") for n in (20_000, 30_000)}
    lake.write_partition("s", "a", "2026-11-10", versions[20_000])
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                back = lake.read_partition("s", "a", "2026-11-10")
                assert back is not None
                n = len(back)
                assert back["user_id"].iloc[-1] == f"v{n}{n - 1}"
                seen.append(n)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for n in (30_000, 20_000, 30_000, 20_000):
        lake.write_partition("s", "a", "2026-11-10", versions[n])
    stop.set()
    reader.join()
    assert not errors
    assert seen and set(seen) <= {20_000, 30_000}


def test_artifacts_on_s3(s3_bucket: Bucket) -> None:
    lake = lake_from_url(f"s3://{s3_bucket.name}/models")
    lake.write_artifact("s", "als_model", "2026-11-10", "model.npz", b"\x00\x01")
    assert lake.read_artifact("s", "als_model", "2026-11-10", "model.npz") == b"\x00\x01"
    assert lake.read_artifact("s", "als_model", "2026-11-11", "model.npz") is None
    assert lake.artifacts("s", "als_model", "2026-11-10") == ["model.npz"]
    assert lake.days("s", "als_model") == ["2026-11-10"]


def test_a_single_run_range_writes_every_day_to_s3(s3_bucket: Bucket) -> None:
    """One run over three days through the lake IO manager; re-running writes the same bytes."""
    partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01")

    @dg.asset(
        key=["site", "counts"],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager",
    )
    def counts(context: dg.AssetExecutionContext) -> pd.DataFrame:
        days = sorted(context.partition_keys)
        # The middle day has no rows: its partition must still be written (empty).
        return pd.concat([frame(day, 2) for day in days if day != "2026-11-02"])

    @dg.asset(
        key=["site", "total"],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"counts": dg.AssetIn(["site", "counts"])},
        io_manager_key="lake_io_manager",
    )
    def total(counts: pd.DataFrame) -> pd.DataFrame:
        return counts.groupby("date", as_index=False)["x"].sum()

    url = f"s3://{s3_bucket.name}/lake"
    defs = dg.Definitions(
        assets=[counts, total], resources={"lake_io_manager": LakeIOManager(url=url)}
    )
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {
        "dagster/asset_partition_range_start": "2026-11-01",
        "dagster/asset_partition_range_end": "2026-11-03",
    }
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, tags=tags).success
        lake = lake_from_url(url)
        assert lake.days("site", "counts") == ["2026-11-01", "2026-11-02", "2026-11-03"]
        assert [lake.row_count("site", "counts", d) for d in lake.days("site", "counts")] == [
            2,
            0,
            2,
        ]
        before = {key: _object(lake, key) for key in s3_bucket.object_keys()}
        assert job.execute_in_process(instance=instance, tags=tags).success
        after = {key: _object(lake, key) for key in s3_bucket.object_keys()}
    assert after == before
    totals = lake.read_partitions("site", "total", ["2026-11-01", "2026-11-03"])
    assert totals is not None and totals["x"].tolist() == [1, 1]


def _object(lake: object, key: str) -> bytes:
    fs = lake.fs  # type: ignore[attr-defined]
    base = lake.base.split("/", 1)[0]  # type: ignore[attr-defined]
    with fs.open_input_stream(f"{base}/{key}") as stream:
        return bytes(stream.read())


def test_unknown_bucket_fails_clearly(s3_bucket: Bucket) -> None:
    lake = lake_from_url("s3://no-such-bucket-here/lake")
    with pytest.raises(OSError):
        lake.write_partition("s", "a", "2026-11-10", frame("2026-11-10", 1))
