"""Page fetchers: what a site's CMS says about the pages readers opened.

Behind one protocol, chosen per site in YAML (``pages.fetcher``): ``WordPressPages`` (the REST
API), ``HtmlMetaPages`` (the article page's meta tags) or none (ids from the events only). A
fetcher turns paths into registry rows (``core.page_registry``), politely (``polite``).
"""

from __future__ import annotations

from typing import Protocol

import httpx
import pandas as pd

from recs_pipeline.adapters.pages.html_meta import HtmlMetaPages
from recs_pipeline.adapters.pages.polite import FetchStats
from recs_pipeline.adapters.pages.wordpress import WordPressPages
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.urls import PageRules

__all__ = ["HtmlMetaPages", "PageFetcher", "WordPressPages", "page_fetcher"]


class PageFetcher(Protocol):
    """Registry rows (plus ``status``: ok, excluded, failed, skipped) for some paths."""

    name: str
    stats: FetchStats

    def fetch(self, pages: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame: ...


def page_rules(site: SiteConfig) -> PageRules:
    hosts = tuple(site.events.hosts)
    if site.pages.base_url:
        host = httpx.URL(site.pages.base_url).host
        hosts = (*hosts, host) if hosts and host not in hosts else hosts or (host,)
    return PageRules(
        article_id_pattern=site.events.article_id_pattern,
        excluded_path_prefixes=tuple(site.events.excluded_path_prefixes),
        hosts=hosts,
        significant_params=tuple(site.events.significant_params),
    )


def page_fetcher(
    site: SiteConfig, transport: httpx.AsyncBaseTransport | None = None
) -> PageFetcher | None:
    """The site's fetcher, or None when its pages are ids only."""
    if site.pages.fetcher == "wordpress":
        return WordPressPages(site.pages, page_rules(site), transport)
    if site.pages.fetcher == "html_meta":
        return HtmlMetaPages(site.pages, page_rules(site), transport)
    return None
