"""Any site: the article page's own meta tags (Open Graph and ``article:*``).

``GET <base_url><path>``; read ``og:title`` (else ``<title>``), ``og:description``,
``article:published_time``, ``article:modified_time``, ``article:section``, ``article:tag`` and
``<link rel="canonical">``. A page whose canonical link is another page, or that is neither
``og:type=article`` nor has a publish time, is not an article (with the reason).
"""

from __future__ import annotations

import pandas as pd
from selectolax.lexbor import LexborHTMLParser

from recs_pipeline.adapters.pages.base import HttpPageFetcher, Row, excluded
from recs_pipeline.adapters.pages.polite import PoliteClient

#: Bytes of a page parsed at most (the head is at the top; a huge page is not read whole).
MAX_HTML_BYTES = 2 << 20


def _time(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    stamp = pd.to_datetime(value.strip(), errors="coerce", utc=True)
    return None if pd.isna(stamp) else stamp


class HtmlMetaPages(HttpPageFetcher):
    name = "html_meta"

    async def page(self, client: PoliteClient, path: str) -> Row:
        response = await client.get(f"{self.base_url}{path}")
        if response.status_code in (404, 410):
            return excluded("not_found")
        if response.status_code != 200:
            return excluded(f"http_{response.status_code}")
        if "html" not in response.headers.get("content-type", "text/html"):
            return excluded("not_html")
        tree = LexborHTMLParser(response.content[:MAX_HTML_BYTES].decode("utf-8", "replace"))
        meta: dict[str, list[str]] = {}
        for node in tree.css("meta"):
            key = node.attributes.get("property") or node.attributes.get("name")
            content = node.attributes.get("content")
            if key and content is not None:
                meta.setdefault(key.strip().lower(), []).append(content.strip())

        def first(key: str) -> str | None:
            values = meta.get(key)
            return values[0] if values else None

        canonical_node = tree.css_first('link[rel="canonical"]')
        canonical = canonical_node.attributes.get("href") if canonical_node else None
        if canonical:
            canonical_path, reason = self.rules.canonical(canonical)
            if canonical_path is None:
                return excluded(f"canonical_{reason}")
            if canonical_path != path:
                return excluded("canonical_elsewhere", description=canonical_path)
        published = _time(first("article:published_time"))
        if first("og:type") not in (None, "article") and published is None:
            return excluded("not_article")
        if published is None and first("og:type") is None:
            return excluded("no_article_metadata")
        title_node = tree.css_first("title")
        title = first("og:title") or (title_node.text(strip=True) if title_node else None)
        return {
            "status": "ok",
            "external_id": canonical,
            "title": title,
            "description": first("og:description") or first("description"),
            "published_at": published,
            "modified_at": _time(first("article:modified_time") or first("og:updated_time")),
            "section": first("article:section"),
            "tags": ",".join(meta.get("article:tag", [])) or None,
            "in_house": True,
        }
