"""The ``session_ranker`` asset in the whole graph: trained for the run's newest day, recorded
for every day, and published inside the newest user version's params only when it beat the
blend on the day's held-out sessions."""

from __future__ import annotations

import json

import dagster as dg

from recs_pipeline.adapters.model_store import SESSION_RANKER_INFO, read_session_ranker
from recs_pipeline.serving.session_ranker import LIVE_FEATURES, SESSION_RANKER_PARAM
from recs_pipeline.serving.snapshot import reader_from_url
from recs_pipeline_tests.conftest import Materialised


def _info(state: Materialised, day: str) -> dict[str, object]:
    data = state.lake.read_artifact(state.site.name, "session_ranker", day, SESSION_RANKER_INFO)
    assert data is not None, day
    info: dict[str, object] = json.loads(data)
    return info


def test_the_newest_day_trains_and_the_others_say_why_not(materialised: Materialised) -> None:
    days = materialised.generated.days
    newest = _info(materialised, days[-1])
    assert newest["trained"] is True, newest
    validation = newest["validation"]
    assert isinstance(validation, dict)
    assert validation["session_ranker"]["NDCG@20"] > 0
    assert validation["blend"]["NDCG@20"] > 0
    assert isinstance(newest["beats_blend"], bool)
    for day in days[:-1]:
        older = _info(materialised, day)
        assert older["trained"] is False and "later day" in str(older["reason"])
        assert read_session_ranker(materialised.lake, materialised.site, day) is None
    document = read_session_ranker(materialised.lake, materialised.site, days[-1])
    assert document is not None and document["info"]["day"] == days[-1]

    records = materialised.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([materialised.site.name, "session_ranker"]),
            asset_partitions=[days[-1]],
        ),
        limit=1,
    ).records
    assert records and records[0].asset_materialization is not None
    metadata = records[0].asset_materialization.metadata
    ndcg = metadata["validation_ndcg20"].value
    assert ndcg == validation["session_ranker"]["NDCG@20"]


def test_the_published_version_carries_the_ranker_only_when_it_beat_the_blend(
    materialised: Materialised,
) -> None:
    days = materialised.generated.days
    newest = _info(materialised, days[-1])
    current = materialised.publisher.current(materialised.site.name, "user")
    assert current is not None
    carried = current.params.get(SESSION_RANKER_PARAM)
    assert bool(carried) == bool(newest["beats_blend"])
    snapshot = reader_from_url(materialised.database_url).load(materialised.site.name)
    if newest["beats_blend"]:
        assert snapshot.session_ranker is not None
        assert set(snapshot.session_ranker.features) <= set(LIVE_FEATURES)
    else:
        assert snapshot.session_ranker is None
