"""Every asset's name, declared once: its key under the site (``<site>/<name>``) and its folder
in the lake (``<lake>/<site>/<name>/<day>``). Code refers to these, never to the strings."""

from __future__ import annotations

from typing import Final

RAW_EVENTS: Final = "raw_events"
QUARANTINED_EVENTS: Final = "quarantined_events"
PAGES: Final = "pages"
ENGAGEMENT: Final = "engagement"
INTERACTIONS: Final = "interactions"
ALS_MODEL: Final = "als_model"
SIMILAR_ARTICLES: Final = "similar_articles"
POPULAR_ARTICLES: Final = "popular_articles"
RANKER_MODEL: Final = "ranker_model"
RECOMMENDATION_EVALUATION: Final = "recommendation_evaluation"
USER_RECOMMENDATIONS: Final = "user_recommendations"
SESSION_RANKER: Final = "session_ranker"
PUBLISHED_RECOMMENDATIONS: Final = "published_recommendations"

ALL: Final = (
    RAW_EVENTS,
    QUARANTINED_EVENTS,
    PAGES,
    ENGAGEMENT,
    INTERACTIONS,
    ALS_MODEL,
    SIMILAR_ARTICLES,
    POPULAR_ARTICLES,
    RANKER_MODEL,
    RECOMMENDATION_EVALUATION,
    USER_RECOMMENDATIONS,
    SESSION_RANKER,
    PUBLISHED_RECOMMENDATIONS,
)
