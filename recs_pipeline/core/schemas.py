"""Column contracts of the frames that flow between stages.

Every stage of the graph hands a pandas DataFrame to the next one; these constants are the one
place that says which columns each frame has. Day-partitioned frames carry a ``date`` column
(``YYYY-MM-DD`` string, the day in the site's time zone) so a multi-day frame can be split back
into its partitions by the lake.

Timestamps are ``datetime64[ms, UTC]``; ids (users, articles) are strings.
"""

from __future__ import annotations

from typing import Final

DATE: Final = "date"

#: Parsed, validated, de-duplicated events (asset ``raw_events``).
EVENT_COLUMNS: Final = (
    DATE,
    "event_id",
    "ts",
    "user_id",
    "article_id",
    "event_name",  # "page_view" or "page_ping"
    "path",  # canonical path (site rules: no query except significant parameters)
    "referrer",
    "engaged_ms",  # engagement time a source measured itself (GA4); 0 for heartbeat sources
)

#: Lines or rows that failed validation (asset ``quarantined_events``).
QUARANTINE_COLUMNS: Final = (DATE, "reason", "source_file", "line_no", "raw")

#: Per (user, article, day) engagement (asset ``engagement``).
ENGAGEMENT_COLUMNS: Final = (
    DATE,
    "user_id",
    "article_id",
    "views",  # page_view / click count
    "pings",  # page_ping heartbeat count
    "dwell_seconds",  # pings x heartbeat interval (0 when the source has no heartbeats)
    "first_ts",
    "last_ts",
)

#: Articles seen on a day (asset ``pages``).
PAGE_COLUMNS: Final = (DATE, "article_id", "path", "first_seen", "last_seen", "views", "readers")
#: What a page fetcher learnt about the articles of ``pages`` (null when the site has none).
#: ``published_at`` is the CMS's publish time: the age of an article for recency terms.
PAGE_METADATA_COLUMNS: Final = ("title", "published_at", "section", "in_house")

#: Trailing-window interactions as of the end of ``date`` (asset ``interactions``).
#: ``weight`` is the confidence the models use (dwell seconds, or views for click-only sources);
#: ``article_first_seen`` is the article's first event inside the window (its age proxy).
INTERACTION_COLUMNS: Final = (
    DATE,
    "user_id",
    "article_id",
    "weight",
    "views",
    "dwell_seconds",
    "last_ts",
    "article_first_seen",
)

#: Time-decayed popularity (asset ``popular_articles``); best score scaled to 1.
POPULAR_COLUMNS: Final = (DATE, "rank", "article_id", "score")

#: Item-to-item recommendations (asset ``similar_articles``); rank starts at 1.
SIMILAR_COLUMNS: Final = (DATE, "article_id", "rank", "similar_article_id", "score")

#: Per-user recommendations (asset ``user_recommendations``); source is "als" or "popular".
USER_RECOMMENDATION_COLUMNS: Final = (DATE, "user_id", "rank", "article_id", "score", "source")
