"""Page URLs: one canonical form per article page, the article id, and why a page is not one.

Events name pages in many spellings (``http://www.site.com/a-1/?utm_source=x#top``,
``https://site.com/a-1``); every stage after ingestion needs one. The canonical form is the
site's scheme and host (``https``, lower case), the path without repeated or trailing slashes, and
only the query parameters the site declares significant (sorted), never the fragment. Events of a
foreign host (proxies, translators, staging copies) are not the site's pages.

Work is per distinct URL (a day of ten million events has a few thousand pages), so the
per-value Python here never runs per event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd

#: Non-article reasons, in the order they are checked.
FOREIGN_HOST = "foreign_host"
BAD_URL = "bad_url"
EXCLUDED_PREFIX = "excluded_prefix"
EXCLUDED_PATTERN = "excluded_pattern"
NO_ARTICLE_ID = "no_article_id"


@dataclass(frozen=True)
class PageRules:
    """A site's rules for page URLs (from the ``events`` section of its YAML)."""

    #: Regex whose first group (or whole match) is the article id inside a canonical path.
    article_id_pattern: str = r"-(\d+)/?$"
    #: Paths starting with one of these are never articles (sections, authors, tags).
    excluded_path_prefixes: tuple[str, ...] = ()
    #: ``(regex, reason)`` pairs: a path matching the regex is not an article, for that reason.
    excluded_path_patterns: tuple[tuple[str, str], ...] = ()
    #: Hosts of the site (``www.`` is ignored); empty: every host is accepted.
    hosts: tuple[str, ...] = ()
    #: Query parameters that name a different page (``?id=``); every other one is dropped.
    significant_params: tuple[str, ...] = ()

    @cached_property
    def _hosts(self) -> frozenset[str]:
        return frozenset(_bare_host(host) for host in self.hosts)

    @cached_property
    def _article(self) -> re.Pattern[str]:
        return re.compile(self.article_id_pattern)

    @cached_property
    def _excluded(self) -> list[tuple[re.Pattern[str], str]]:
        return [(re.compile(pattern), reason) for pattern, reason in self.excluded_path_patterns]

    def canonical(self, url: str) -> tuple[str | None, str | None]:
        """``(canonical path with significant query, None)`` or ``(None, reason)``.

        A bare path (``/a-1/``) is taken as the site's own; a full URL must be http(s) on one of
        the site's hosts.
        """
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            return None, BAD_URL
        if parts.scheme or parts.netloc:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return None, BAD_URL
            if self._hosts and _bare_host(parts.hostname) not in self._hosts:
                return None, FOREIGN_HOST
        path = canonical_path(parts.path)
        if self.significant_params and parts.query:
            kept = sorted(
                (name, value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
                if name in self.significant_params
            )
            if kept:
                path = f"{path}?{urlencode(kept)}"
        return path, None

    def classify_path(self, path: str) -> tuple[str | None, str | None]:
        """``(article id, None)`` for an article's canonical path, else ``(None, reason)``."""
        bare = path.split("?", 1)[0]
        for prefix in self.excluded_path_prefixes:
            if bare.startswith(prefix):
                return None, EXCLUDED_PREFIX
        for pattern, reason in self._excluded:
            if pattern.search(bare):
                return None, reason
        match = self._article.search(bare) or self._article.search(path)
        if match is None:
            return None, NO_ARTICLE_ID
        article = match.group(1) if match.groups() else match.group(0)
        return (article, None) if article else (None, NO_ARTICLE_ID)


def _bare_host(host: str) -> str:
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


_SLASHES = re.compile(r"/{2,}")


def canonical_path(path: str) -> str:
    """``/a//b/`` -> ``/a/b``; the root stays ``/``."""
    path = _SLASHES.sub("/", "/" + path.strip())
    return path.rstrip("/") or "/"


@dataclass
class ClassifiedPages:
    """Per event: the canonical path, the article id, and the reason it is not an article."""

    path: pd.Series
    article_id: pd.Series
    reason: pd.Series


def classify(
    urls: pd.Series, rules: PageRules, given_ids: pd.Series | None = None
) -> ClassifiedPages:
    """Canonicalise and classify a column of URLs or paths, working once per distinct value.

    ``given_ids`` (a source that names articles itself, like a click log) wins over the path:
    such a row is an article whatever its path says, and a row with neither is ``no_article_id``.
    """
    if isinstance(urls.dtype, pd.CategoricalDtype):
        codes, uniques = urls.cat.codes.to_numpy(), urls.cat.categories
        missing = codes < 0
    else:
        urls = urls.astype("string")
        codes, uniques = pd.factorize(urls)
        missing = urls.isna().to_numpy()
    table: dict[str, tuple[str | None, str | None, str | None]] = {}
    for url in uniques:
        path, reason = rules.canonical(str(url))
        article = None
        if path is not None:
            article, reason = rules.classify_path(path)
        table[str(url)] = (path, article, reason)
    values = [table[str(u)] for u in uniques]
    index = urls.index

    def column(position: int) -> pd.Series:
        # Categorical: one string per distinct value, however many events (-1 -> missing).
        lookup = pd.Categorical([v[position] for v in values] + [None])
        return pd.Series(lookup.take(codes), index=index)

    paths, articles, reasons = column(0), column(1), column(2)
    reasons = reasons.astype("string").mask(missing, NO_ARTICLE_ID)
    if given_ids is not None:
        articles = given_ids.astype("string").fillna(articles.astype("string"))
        reasons = reasons.astype("string").where(articles.isna())
    return ClassifiedPages(path=paths, article_id=articles, reason=reasons)
