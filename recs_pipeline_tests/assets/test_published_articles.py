"""The serving ``article`` table gets what ``pages`` learnt from the site's CMS.

The session's generated site has no page fetcher (the demo's ``fetcher: none``: no titles), so
this runs its last day's ``pages`` again with the HTML-meta fetcher against a loopback stand-in
of the site, on a copy of the session's lake, and publishes into a database of its own.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.adapters.publishing import publisher_from_url
from recs_pipeline.core.site import PagesConfig
from recs_pipeline.definitions import build_definitions
from recs_pipeline_tests.conftest import Materialised

PUBLISHED = "2026-10-30T08:00:00+00:00"


def headline(path: str) -> str:
    return f"Headline of {path}"


def article_page(request: Request) -> Response:
    html = (
        "<html><head>"
        '<meta property="og:type" content="article">'
        f'<meta property="og:title" content="{headline(request.path)}">'
        f'<meta property="article:published_time" content="{PUBLISHED}">'
        "</head><body></body></html>"
    )
    return Response(html, content_type="text/html; charset=utf-8")


def test_published_articles_carry_the_title_and_publish_time_from_pages(
    materialised: Materialised, tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(re.compile(r"^/.*")).respond_with_handler(article_page)
    lake_url = str(tmp_path / "lake")
    shutil.copytree(materialised.lake_url, lake_url)
    database = tmp_path / "recs.sqlite"
    pages_config = PagesConfig.model_validate(
        {
            "fetcher": "html_meta",
            "base_url": httpserver.url_for("").rstrip("/"),
            "requests_per_second": 500,
            "max_concurrency": 8,
        }
    )
    site = materialised.site.model_copy(update={"pages": pages_config})
    day = materialised.generated.days[-1]
    job = build_definitions(
        [site], lake_url, f"sqlite:///{database}"
    ).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key=day,
            asset_selection=[
                dg.AssetKey([site.name, "pages"]),
                dg.AssetKey([site.name, "published_recommendations"]),
            ],
        )
    assert result.success

    pages = lake_from_url(lake_url).read_partition(site.name, "pages", day)
    assert pages is not None and len(pages) > 10
    assert (pages["title"] == pages["path"].map(headline)).all()
    with sqlite3.connect(database) as conn:
        stored = pd.read_sql_query(
            "SELECT article_id, path, title, published_at FROM article WHERE site = ?",
            conn,
            params=(site.name,),
        ).set_index("article_id")
    assert sorted(stored.index) == sorted(pages["article_id"].astype(str))
    by_page = pages.set_index(pages["article_id"].astype(str))
    assert (stored["title"] == by_page.loc[stored.index, "title"]).all()
    assert (stored["path"] == by_page.loc[stored.index, "path"]).all()
    assert (stored["published_at"] == "2026-10-30T08:00:00.000000+00:00").all()

    # What a reader is served is an article whose headline came from the site.
    popular = publisher_from_url(f"sqlite:///{database}").recommendations(
        site.name, "popular", "default", size=3
    )
    assert len(popular) == 3
    for article_id in popular["article_id"]:
        assert stored.loc[article_id, "title"] == headline(by_page.loc[article_id, "path"])
