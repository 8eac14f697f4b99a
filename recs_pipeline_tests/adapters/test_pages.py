"""Page fetchers against a real HTTP server on loopback speaking the WordPress REST protocol.

The stand-in (``pytest-httpserver``, threaded) answers like a WordPress site: posts by slug, with
drafts, shared slugs and republished tags; and misbehaves on demand: slow answers, 5xx, 429 with
``Retry-After``, so politeness (limits, retries, the circuit) is measured, not assumed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from recs_pipeline.adapters.pages import HtmlMetaPages, WordPressPages, page_fetcher
from recs_pipeline.adapters.pages.polite import CircuitBreaker, retry_after_seconds
from recs_pipeline.core.page_registry import due_for_fetch, empty_registry, merge, normalise
from recs_pipeline.core.site import SiteConfig

NOW = pd.Timestamp("2026-11-10 12:00", tz="UTC")
HOST = "news.example.com"


class WordPress:
    """A WordPress site: posts by slug, with a log of requests and their overlap."""

    def __init__(self) -> None:
        self.posts: dict[str, list[dict[str, Any]]] = {}
        self.times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.delay = 0.0
        self.failures: list[Response] = []  # answered first, one per request

    def add(self, path: str, **fields: Any) -> None:
        slug = path.rstrip("/").rsplit("/", 1)[-1]
        post = {
            "id": len(self.posts) + 1,
            "date_gmt": "2026-11-09T08:00:00",
            "modified_gmt": "2026-11-09T09:00:00",
            "slug": slug,
            "status": "publish",
            "type": "post",
            "link": f"https://{HOST}{path}/",
            "title": {"rendered": f"Title of {slug} &amp; more"},
            "excerpt": {"rendered": "<p>An <em>excerpt</em>.</p>\n"},
            "tags": [3],
        }
        post.update(fields)
        self.posts.setdefault(slug, []).append(post)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.times.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.failures.pop(0) if self.failures else None
        try:
            if self.delay:
                time.sleep(self.delay)
            if failure is not None:
                return failure
            assert request.args["_fields"].startswith("id,date_gmt,modified_gmt")
            posts = self.posts.get(request.args["slug"], [])
            return Response(json.dumps(posts), content_type="application/json")
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    with HTTPServer(host="127.0.0.1", threaded=True) as http:
        yield http


@pytest.fixture
def wordpress(server: HTTPServer) -> WordPress:
    site = WordPress()
    server.expect_request("/wp-json/wp/v2/posts").respond_with_handler(site.handle)
    return site


def config(server: HTTPServer, fetcher: str = "wordpress", **pages: Any) -> SiteConfig:
    defaults: dict[str, Any] = {
        "fetcher": fetcher,
        "base_url": server.url_for("").rstrip("/"),
        "requests_per_second": 50,
        "max_concurrency": 4,
        "backoff_seconds": 0.05,
        "max_backoff_seconds": 0.2,
        "timeout_seconds": 2,
    }
    return SiteConfig.model_validate(
        {
            "name": "news",
            "start_date": "2026-11-01",
            "events": {"format": "snowplow", "location": "/nowhere", "hosts": [HOST]},
            "pages": defaults | pages,
        }
    )


def fetch(site: SiteConfig, paths: list[str]) -> pd.DataFrame:
    fetcher = page_fetcher(site)
    assert fetcher is not None
    pages = pd.DataFrame({"path": paths, "article_id": [p.rsplit("-", 1)[-1] for p in paths]})
    return fetcher.fetch(pages, NOW).set_index("path")


def test_wordpress_accepts_one_published_post_whose_link_is_the_page(
    server: HTTPServer, wordpress: WordPress
) -> None:
    wordpress.add("/politics/budget-vote-123")
    wordpress.add("/world/wire-story-7", tags=[3, 99])
    wordpress.add("/drafts/secret-plan-5", status="draft")
    wordpress.add("/about/team-6", type="page")
    wordpress.add("/sports/match-8", link=f"https://{HOST}/other/match-8/")
    wordpress.add("/dup/twice-9")
    wordpress.add("/dup/twice-9")
    site = config(server, republished_tags=["99"])
    rows = fetch(
        site,
        [
            "/politics/budget-vote-123",
            "/world/wire-story-7",
            "/drafts/secret-plan-5",
            "/about/team-6",
            "/sports/match-8",
            "/dup/twice-9",
            "/gone/missing-1",
        ],
    )
    ok = rows.loc["/politics/budget-vote-123"]
    assert ok["status"] == "ok"
    assert ok["title"] == "Title of budget-vote-123 & more"
    assert ok["description"] == "An excerpt ."
    assert ok["published_at"] == pd.Timestamp("2026-11-09 08:00", tz="UTC")
    assert ok["modified_at"] == pd.Timestamp("2026-11-09 09:00", tz="UTC")
    assert ok["external_id"] == "1" and ok["in_house"] is True and ok["tags"] == "3"
    assert rows.loc["/world/wire-story-7", "in_house"] is False
    assert rows["exclude_reason"].dropna().to_dict() == {
        "/drafts/secret-plan-5": "not_a_published_post",
        "/about/team-6": "not_a_published_post",
        "/sports/match-8": "link_mismatch",
        "/dup/twice-9": "ambiguous",
        "/gone/missing-1": "not_found",
    }


def test_limits_hold_concurrency_and_request_rate(server: HTTPServer, wordpress: WordPress) -> None:
    for i in range(8):
        wordpress.add(f"/news/story-{i}")
    wordpress.delay = 0.15
    site = config(server, max_concurrency=2, requests_per_second=10)
    started = time.monotonic()
    rows = fetch(site, [f"/news/story-{i}" for i in range(8)])
    elapsed = time.monotonic() - started
    assert (rows["status"] == "ok").all()
    assert wordpress.max_in_flight == 2
    gaps = [b - a for a, b in zip(wordpress.times, wordpress.times[1:], strict=False)]
    # 10 requests/s: no burst. Arrival times at the server jitter on a loaded machine, so the
    # rate is checked over the whole run and each gap only against a clear burst.
    assert wordpress.times[-1] - wordpress.times[0] >= 0.9 * (len(wordpress.times) - 1) / 10
    assert min(gaps) >= 0.04
    assert elapsed >= 0.6  # 8 requests at 2 at a time x 0.15 s, or 10/s: both bind


def test_retries_5xx_and_honours_retry_after(server: HTTPServer, wordpress: WordPress) -> None:
    wordpress.add("/news/story-1")
    wordpress.failures = [
        Response("busy", status=503),
        Response("slow down", status=429, headers={"Retry-After": "1"}),
    ]
    site = config(server, max_retries=3)
    fetcher = page_fetcher(site)
    assert fetcher is not None
    rows = fetcher.fetch(pd.DataFrame({"path": ["/news/story-1"], "article_id": ["1"]}), NOW)
    assert rows["status"].tolist() == ["ok"]
    assert len(wordpress.times) == 3
    assert wordpress.times[2] - wordpress.times[1] >= 0.95  # waited what Retry-After said
    assert fetcher.stats.retries == 2
    assert fetcher.stats.statuses == {503: 1, 429: 1, 200: 1}


def test_a_retry_after_beyond_the_limit_gives_the_page_up(
    server: HTTPServer, wordpress: WordPress
) -> None:
    wordpress.failures = [Response("later", status=429, headers={"Retry-After": "3600"})]
    rows = fetch(config(server, max_retry_after_seconds=10), ["/news/story-1"])
    assert rows["status"].tolist() == ["failed"]
    assert len(wordpress.times) == 1


def test_slow_answers_time_out_and_fail_after_retries(
    server: HTTPServer, wordpress: WordPress
) -> None:
    wordpress.add("/news/story-1")
    wordpress.delay = 1.0
    started = time.monotonic()
    rows = fetch(config(server, timeout_seconds=0.3, max_retries=1), ["/news/story-1"])
    assert rows["status"].tolist() == ["failed"]
    assert len(wordpress.times) == 2  # the first try and one retry
    assert time.monotonic() - started < 2.5


def test_the_circuit_stops_hammering_a_failing_cms(
    server: HTTPServer, wordpress: WordPress
) -> None:
    wordpress.failures = [Response("down", status=500) for _ in range(100)]
    site = config(server, max_concurrency=1, max_retries=1, circuit_failures=3)
    fetcher = page_fetcher(site)
    assert fetcher is not None
    paths = [f"/news/story-{i}" for i in range(20)]
    rows = fetcher.fetch(pd.DataFrame({"path": paths, "article_id": None}), NOW)
    counts = rows["status"].value_counts().to_dict()
    # Three failed requests in a row open the circuit: the three pages tried are failed (the
    # circuit also cut their retries short), the other seventeen are not asked at all.
    assert counts == {"failed": 3, "skipped": 17}
    assert len(wordpress.times) == 3
    assert fetcher.stats.skipped_circuit_open == 17


def test_circuit_half_opens_after_the_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    now[0] = 11
    assert breaker.allow()  # one trial
    assert not breaker.allow()
    breaker.failure()  # the trial failed: open again
    now[0] = 15
    assert not breaker.allow()
    now[0] = 22
    assert breaker.allow()
    breaker.success()
    assert breaker.allow() and breaker.allow()
    assert breaker.times_opened == 2


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None


ARTICLE_HTML = """<!doctype html><html><head>
<title>Budget vote | News</title>
<meta property="og:type" content="article">
<meta property="og:title" content="Budget vote passes">
<meta property="og:description" content="The vote, explained.">
<meta property="article:published_time" content="2026-11-09T10:00:00-03:00">
<meta property="article:modified_time" content="2026-11-09T11:00:00-03:00">
<meta property="article:section" content="Politics">
<meta property="article:tag" content="budget"><meta property="article:tag" content="congress">
<link rel="canonical" href="https://news.example.com/politics/budget-vote-123">
</head><body><p>text</p></body></html>"""


def test_html_meta_tags(server: HTTPServer) -> None:
    html = "text/html; charset=utf-8"
    server.expect_request("/politics/budget-vote-123").respond_with_data(
        ARTICLE_HTML, 200, None, None, html
    )
    server.expect_request("/amp/budget-vote-123").respond_with_data(
        ARTICLE_HTML, 200, None, None, html
    )
    server.expect_request("/section/politics").respond_with_data(
        '<html><head><meta property="og:type" content="website"></head></html>',
        200,
        None,
        None,
        html,
    )
    server.expect_request("/gone-2").respond_with_data("gone", 404)
    server.expect_request("/feed-1").respond_with_data("{}", 200, None, None, "application/json")
    site = config(server, fetcher="html_meta")
    assert isinstance(page_fetcher(site), HtmlMetaPages)
    rows = fetch(
        site,
        [
            "/politics/budget-vote-123",
            "/amp/budget-vote-123",
            "/section/politics",
            "/feed-1",
            "/gone-2",
        ],
    )
    ok = rows.loc["/politics/budget-vote-123"]
    assert ok["title"] == "Budget vote passes"
    assert ok["published_at"] == pd.Timestamp("2026-11-09 13:00", tz="UTC")
    assert ok["section"] == "Politics" and ok["tags"] == "budget,congress"
    assert rows["exclude_reason"].dropna().to_dict() == {
        "/amp/budget-vote-123": "canonical_elsewhere",
        "/section/politics": "not_article",
        "/feed-1": "not_html",
        "/gone-2": "not_found",
    }


def test_none_fetcher_means_ids_only(server: HTTPServer) -> None:
    assert page_fetcher(config(server, fetcher="none")) is None
    assert isinstance(page_fetcher(config(server)), WordPressPages)


# ---------------------------------------------------------------------------------------------
# Registry rules (pure)


def registry_row(path: str, **fields: Any) -> dict[str, Any]:
    return {"path": path, "article_id": path.rsplit("-", 1)[-1], **fields}


def test_fetch_rules_new_undated_recent_never_excluded_and_force() -> None:
    registry = normalise(
        pd.DataFrame(
            [
                registry_row("/old-1", published_at=NOW - pd.Timedelta(days=5), title="a"),
                registry_row("/fresh-2", published_at=NOW - pd.Timedelta(hours=3)),
                registry_row("/undated-3"),
                registry_row("/author-4", exclude_reason="not_found"),
            ]
        )
    )
    pages = pd.DataFrame(
        {"path": ["/old-1", "/fresh-2", "/undated-3", "/author-4", "/new-5"], "article_id": "x"}
    )
    due = due_for_fetch(registry, pages, NOW)
    assert due["path"].tolist() == ["/new-5", "/undated-3", "/fresh-2"]
    assert len(due_for_fetch(registry, pages, NOW, force=True)) == 5
    assert due_for_fetch(empty_registry(), pages, NOW)["path"].tolist() == pages["path"].tolist()


def test_upsert_only_when_the_cms_modified_time_is_newer() -> None:
    t = pd.Timestamp("2026-11-09 09:00", tz="UTC")
    registry = normalise(
        pd.DataFrame(
            [
                registry_row("/a-1", title="old a", modified_at=t),
                registry_row("/b-2", title="old b", modified_at=t),
            ]
        )
    )
    fetched = pd.DataFrame(
        [
            registry_row("/a-1", title="new a", modified_at=t + pd.Timedelta(hours=1), status="ok"),
            registry_row(
                "/b-2", title="stale b", modified_at=t - pd.Timedelta(hours=1), status="ok"
            ),
            registry_row("/c-3", title="c", modified_at=t, status="ok"),
            registry_row("/d-4", exclude_reason="not_found", status="excluded"),
            registry_row("/e-5", status="failed"),
        ]
    )
    merged, counts = merge(registry, fetched)
    titles = merged.set_index("path")["title"].to_dict()
    assert titles == {"/a-1": "new a", "/b-2": "old b", "/c-3": "c", "/d-4": None} | {
        "/d-4": titles["/d-4"]
    }
    assert pd.isna(titles["/d-4"]) and "/e-5" not in titles
    assert (counts.created, counts.updated, counts.unchanged) == (1, 1, 1)
    assert (counts.excluded, counts.failed) == (1, 1)
    forced, forced_counts = merge(registry, fetched, force=True)
    assert forced.set_index("path").loc["/b-2", "title"] == "stale b"
    assert forced_counts.updated == 2
