"""What the HTTP page fetchers share: politeness, one row per path, failures that never raise."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pandas as pd
from selectolax.lexbor import LexborHTMLParser

from recs_pipeline.adapters.pages.polite import (
    CircuitOpen,
    FetchFailed,
    FetchStats,
    PoliteClient,
    gather_limited,
)
from recs_pipeline.core.page_registry import REGISTRY_COLUMNS
from recs_pipeline.core.site import PagesConfig
from recs_pipeline.core.urls import PageRules

Row = dict[str, Any]


def text_of(html: str | None) -> str | None:
    """Visible text of an HTML fragment (tags dropped, entities decoded, spaces collapsed)."""
    if not html:
        return None
    text = LexborHTMLParser(f"<div>{html}</div>").text(separator=" ", strip=True)
    return " ".join(text.split()) or None


class HttpPageFetcher:
    """Fetches every path concurrently within the site's limits; subclasses ask for one path."""

    name = "http"

    def __init__(
        self,
        config: PagesConfig,
        rules: PageRules,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.rules = rules
        self.transport = transport
        self.base_url = (config.base_url or "").rstrip("/")
        self.stats = FetchStats()

    async def page(self, client: PoliteClient, path: str) -> Row:
        raise NotImplementedError

    def fetch(self, pages: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
        """Registry rows for ``pages`` (``path``, ``article_id``) plus ``status``."""
        rows = asyncio.run(self._fetch_all(list(pages["path"]), now))
        frame = pd.DataFrame(rows, columns=[*REGISTRY_COLUMNS, "status"])
        ids = dict(zip(pages["path"], pages["article_id"], strict=True))
        frame["article_id"] = frame["path"].map(ids)
        return frame

    async def _fetch_all(self, paths: list[str], now: pd.Timestamp) -> list[Row]:
        async with PoliteClient(self.config, self.transport) as client:

            async def one(path: str) -> Row:
                try:
                    row = await self.page(client, path)
                except CircuitOpen:
                    row = {"status": "skipped"}
                except FetchFailed:
                    row = {"status": "failed"}
                return {"path": path, "fetched_at": now, **row}

            rows = await gather_limited(paths, one)
        self.stats = client.stats
        self.breaker_opened = client.breaker.times_opened
        return rows


def excluded(reason: str, **extra: object) -> Row:
    return {"status": "excluded", "exclude_reason": reason, **extra}
