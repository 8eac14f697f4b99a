"""WordPress sites: the REST API's posts endpoint, one request per path.

``GET /wp-json/wp/v2/posts?slug=<slug>&_fields=...`` answers a list of posts with that slug. A
page is an article only if exactly one answer is a published ``post`` whose ``link`` is the page
itself (same canonical path): drafts, pages, attachments and other posts sharing a slug are
excluded with the reason. Title and excerpt are HTML: only their text is kept. An article is
the newsroom's own unless it carries one of the site's ``republished_tags``.
"""

from __future__ import annotations

import re
from functools import cached_property

import pandas as pd

from recs_pipeline.adapters.pages.base import HttpPageFetcher, Row, excluded, text_of
from recs_pipeline.adapters.pages.polite import PoliteClient

FIELDS = "id,date_gmt,modified_gmt,slug,status,type,link,title,excerpt,tags"


def _gmt(value: object) -> pd.Timestamp | None:
    if not isinstance(value, str) or not value:
        return None
    stamp = pd.to_datetime(value, errors="coerce", utc=True)  # date_gmt has no offset: it is UTC
    return None if pd.isna(stamp) else stamp


def _rendered(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("rendered")
    return value if isinstance(value, str) else None


class WordPressPages(HttpPageFetcher):
    name = "wordpress"

    @cached_property
    def slug(self) -> re.Pattern[str]:
        return re.compile(self.config.slug_pattern)

    async def page(self, client: PoliteClient, path: str) -> Row:
        bare = path.split("?", 1)[0]
        match = self.slug.search(bare)
        if match is None or not match.group(1):
            return excluded("no_slug")
        response = await client.get(
            f"{self.base_url}/wp-json/wp/v2/posts",
            params={"slug": match.group(1), "_fields": FIELDS},
        )
        if response.status_code == 404:
            return excluded("not_found")
        if response.status_code != 200:
            return excluded(f"http_{response.status_code}")
        try:
            posts = response.json()
        except ValueError:
            return excluded("bad_response")
        if not isinstance(posts, list):
            return excluded("bad_response")
        if not posts:
            return excluded("not_found")
        same_page = [
            post
            for post in posts
            if isinstance(post, dict)
            and isinstance(post.get("link"), str)
            and self.rules.canonical(post["link"])[0] == path
        ]
        if not same_page:
            return excluded("link_mismatch")
        articles = [
            p for p in same_page if p.get("status") == "publish" and p.get("type") == "post"
        ]
        if not articles:
            kinds = {f"{p.get('type')}/{p.get('status')}" for p in same_page}
            return excluded("not_a_published_post", description=", ".join(sorted(kinds)))
        if len(articles) > 1:
            return excluded("ambiguous")
        post = articles[0]
        tags = [str(tag) for tag in post.get("tags") or [] if isinstance(tag, int | str)]
        republished = set(self.config.republished_tags)
        return {
            "status": "ok",
            "external_id": str(post.get("id")) if post.get("id") is not None else None,
            "title": text_of(_rendered(post.get("title"))),
            "description": text_of(_rendered(post.get("excerpt"))),
            "published_at": _gmt(post.get("date_gmt")),
            "modified_at": _gmt(post.get("modified_gmt")),
            "tags": ",".join(tags) or None,
            "in_house": not (republished and republished.intersection(tags)),
        }
