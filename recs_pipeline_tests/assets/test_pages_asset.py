"""The ``pages`` asset through Dagster: a WordPress stand-in on loopback, a lake registry."""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import orjson
import pandas as pd
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.pages.registry import PageRegistryStore
from recs_pipeline.assets.ingestion import build_ingestion_assets
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.resources import Clock, LakeIOManager, LakeResource

HOST = "news.example.com"
PATHS = ["/politics/budget-vote-123", "/world/summit-456", "/local/gone-789"]


def landing(root: Path) -> None:
    folder = root / "2026/11/10/15"
    folder.mkdir(parents=True)
    lines = []
    for i in range(30):
        path = PATHS[i % 3]
        lines.append(
            orjson.dumps(
                {
                    "event_id": f"e{i}",
                    "collector_tstamp": f"2026-11-10 15:{i:02d}:00.000",
                    "domain_userid": f"u{i % 7}",
                    "event_name": "page_view",
                    "page_url": f"https://{HOST}{path}/?utm_source=feed",
                    "page_urlpath": path,
                    "useragent": "Mozilla/5.0",
                }
            )
        )
    (folder / "part-0.json.gz").write_bytes(gzip.compress(b"\n".join(lines)))


def test_pages_asks_the_cms_once_per_path_and_stores_the_registry(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    asked: list[str] = []

    def posts(request: Request) -> Response:
        slug = request.args["slug"]
        asked.append(slug)
        path = next((p for p in PATHS[:2] if p.endswith(slug)), None)
        if path is None:
            return Response("[]", content_type="application/json")
        post = {
            "id": 7,
            "date_gmt": "2026-11-09T08:00:00",
            "modified_gmt": "2026-11-09T08:30:00",
            "slug": slug,
            "status": "publish",
            "type": "post",
            "link": f"https://{HOST}{path}/",
            "title": {"rendered": f"About {slug}"},
            "excerpt": {"rendered": ""},
            "tags": [],
        }
        return Response(orjson.dumps([post]), content_type="application/json")

    httpserver.expect_request("/wp-json/wp/v2/posts").respond_with_handler(posts)
    landing(tmp_path / "landing")
    site = SiteConfig.model_validate(
        {
            "name": "news",
            "start_date": "2026-11-01",
            "events": {
                "format": "snowplow",
                "location": str(tmp_path / "landing"),
                "hosts": [HOST],
            },
            "pages": {
                "fetcher": "wordpress",
                "base_url": httpserver.url_for("").rstrip("/"),
                "requests_per_second": 50,
            },
        }
    )
    lake_url = str(tmp_path / "lake")
    assets = [a for a in build_ingestion_assets(site) if "engagement" not in str(a.keys)]
    resources = {
        "lake_io_manager": LakeIOManager(url=lake_url),
        "lake": LakeResource(url=lake_url),
        "clock": Clock(),
    }

    def materialise(force: bool = False) -> dict[str, object]:
        with dg.instance_for_test() as instance:
            config = {"ops": {"news__pages": {"config": {"force_refetch": force}}}}
            result = dg.materialize(
                assets,
                partition_key="2026-11-10",
                resources=resources,
                instance=instance,
                run_config=config,
            )
            assert result.success
            event = instance.get_latest_materialization_event(dg.AssetKey(["news", "pages"]))
            assert event is not None and event.asset_materialization is not None
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    first = materialise()
    assert sorted(asked) == ["budget-vote-123", "gone-789", "summit-456"]
    assert (first["pages_created"], first["pages_excluded"], first["cms_requests"]) == (2, 1, 3)
    pages = lake_from_url(lake_url).read_partition("news", "pages", "2026-11-10")
    assert pages is not None
    by_id = pages.set_index("article_id")
    assert by_id.loc["123", "title"] == "About budget-vote-123"
    assert by_id.loc["123", "published_at"] == pd.Timestamp("2026-11-09 08:00", tz="UTC")
    assert by_id.loc["123", "path"] == "/politics/budget-vote-123"  # canonical: no query
    assert pd.isna(by_id.loc["789", "title"])
    registry = PageRegistryStore(lake_from_url(lake_url), "news").read()
    assert registry.set_index("path").loc["/local/gone-789", "exclude_reason"] == "not_found"

    second = materialise()  # published two weeks before the run: nothing to ask
    assert second["cms_requests"] == 0 and len(asked) == 3
    again = lake_from_url(lake_url).read_partition("news", "pages", "2026-11-10")
    assert (
        again is not None
        and again.set_index("article_id").loc["456", "title"] == "About summit-456"
    )

    forced = materialise(force=True)
    assert forced["cms_requests"] == 3 and forced["pages_updated"] == 2
