"""Events posted to the API: each item checked on its own, so one bad item never spoils the rest."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from recs_pipeline.core.urls import PageRules
from recs_pipeline.serving.live import LiveEvent

MAX_ID_CHARS: Final = 256
#: Control characters (and tab, which the Redis store uses as a separator) are refused in ids.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
#: Timestamps before this are not clicks of a news site (and catch seconds sent as ms).
MIN_TS_MS: Final = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
#: How far past the wall clock an event may be dated (clock skew); later ones would move the
#: event-time clock into the future and decay everything real to nothing.
MAX_FUTURE_MS: Final = 3_600_000


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str


def _id(value: Any) -> str | None:
    """A usable id: a non-empty string (or an integer, as text) without control characters."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        return None
    return value


def parse_ts(value: Any) -> int | None:
    """Milliseconds since the epoch from an integer (ms) or ISO 8601 text (naive means UTC)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != math.floor(value):
            return None
        value = int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and 0 < len(value) <= 64:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return round(moment.timestamp() * 1000)
    return None


def parse_events(
    items: Sequence[Any], rules: PageRules, now_ms: int
) -> tuple[list[LiveEvent], list[Rejected]]:
    """Accepted events (in the posted order) and the rejected items' indexes and reasons.

    ``url`` (instead of ``article_id``) goes through the site's URL rules; a page that is not an
    article is rejected with the rules' reason (``url_no_article_id``, ``url_foreign_host``...).
    """
    accepted: list[LiveEvent] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        reason, event = _parse_one(item, rules, now_ms)
        if event is None:
            rejected.append(Rejected(index, reason or "invalid"))
        else:
            accepted.append(event)
    return accepted, rejected


def _parse_one(item: Any, rules: PageRules, now_ms: int) -> tuple[str | None, LiveEvent | None]:
    if not isinstance(item, dict):
        return "not_an_object", None
    if "user_id" not in item or item["user_id"] is None:
        return "missing_user_id", None
    user = _id(item["user_id"])
    if user is None:
        return "bad_user_id", None
    article: str | None
    if item.get("article_id") is not None:
        article = _id(item["article_id"])
        if article is None:
            return "bad_article_id", None
    elif item.get("url") is not None:
        url = item["url"]
        if not isinstance(url, str) or len(url) > 4096:
            return "bad_url", None
        path, why = rules.canonical(url)
        if path is None:
            return f"url_{why}", None
        found, why = rules.classify_path(path)
        if found is None:
            return f"url_{why}", None
        article = _id(found)
        if article is None:
            return "bad_article_id", None
    else:
        return "missing_article_id", None
    if item.get("ts") is None:
        return "missing_ts", None
    ts = parse_ts(item["ts"])
    if ts is None or ts < MIN_TS_MS:
        return "bad_ts", None
    if ts > now_ms + MAX_FUTURE_MS:
        return "ts_in_future", None
    session: str | None = None
    if item.get("session_id") is not None:
        session = _id(item["session_id"])
        if session is None:
            return "bad_session_id", None
    return None, LiveEvent(user, article, ts, session)
