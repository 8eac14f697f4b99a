"""Model artifacts in the lake, day by day: ALS factors, the rankers, similar and popular lists.

Every reader of a trained model goes through here (the assets, ``recs recommend``, the serving
inputs), so where an artifact lives and how a missing one reads is written once.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.als import AlsModel, load_model
from recs_pipeline.core.ranker import RankerModel, load_ranker
from recs_pipeline.core.site import SiteConfig

__all__ = [
    "MODEL_FILE",
    "MODEL_INFO",
    "RANKER_FILE",
    "RANKER_INFO",
    "SESSION_RANKER_FILE",
    "SESSION_RANKER_INFO",
    "load_als",
    "load_day_ranker",
    "ranker_info",
    "read_popular",
    "read_session_ranker",
    "read_similar",
    "write_session_ranker",
]

MODEL_FILE = "model.npz"
MODEL_INFO = "model.json"
RANKER_FILE = "ranker.txt"
RANKER_INFO = "ranker.json"


def load_als(lake: Lake, site: SiteConfig, day: str) -> AlsModel | None:
    """The ALS model trained as of ``day``; None when that day had too little data to train."""
    data = lake.read_artifact(site.name, names.ALS_MODEL, day, MODEL_FILE)
    return load_model(data) if data is not None else None


def ranker_info(lake: Lake, site: SiteConfig, day: str) -> dict[str, Any] | None:
    """The ranker's JSON of a day (trained or not, and why); None when never materialised."""
    data = lake.read_artifact(site.name, names.RANKER_MODEL, day, RANKER_INFO)
    return json.loads(data) if data is not None else None


def load_day_ranker(lake: Lake, site: SiteConfig, day: str) -> RankerModel | None:
    """The ranker trained as of ``day``; None when the day has none (too little data)."""
    info = lake.read_artifact(site.name, names.RANKER_MODEL, day, RANKER_INFO)
    text = lake.read_artifact(site.name, names.RANKER_MODEL, day, RANKER_FILE)
    if info is None or text is None or not json.loads(info).get("trained", False):
        return None
    return load_ranker(text, info)


def read_similar(lake: Lake, site: SiteConfig, day: str) -> pd.DataFrame | None:
    return lake.read_partition(site.name, names.SIMILAR_ARTICLES, day)


def read_popular(lake: Lake, site: SiteConfig, day: str) -> pd.DataFrame:
    """The day's popular list (``rank, article_id, score``); empty when there is none."""
    popular = lake.read_partition(site.name, names.POPULAR_ARTICLES, day)
    if popular is None:
        return pd.DataFrame(columns=["rank", "article_id", "score"])
    return popular


SESSION_RANKER_FILE = "session_ranker.json"
SESSION_RANKER_INFO = "session_ranker_info.json"


def write_session_ranker(
    lake: Lake, site: SiteConfig, day: str, document: dict[str, Any] | None, info: dict[str, Any]
) -> None:
    """A day's session ranker (the JSON document the API loads) and its info (always)."""
    if document is not None:
        lake.write_artifact(
            site.name, names.SESSION_RANKER, day, SESSION_RANKER_FILE, json.dumps(document).encode()
        )
    lake.write_artifact(
        site.name, names.SESSION_RANKER, day, SESSION_RANKER_INFO, json.dumps(info).encode()
    )


def read_session_ranker(lake: Lake, site: SiteConfig, day: str) -> dict[str, Any] | None:
    """The session ranker document of ``day`` written *for that day's info*: None when the day
    trained none (or a stale file is left from an earlier run that trained one)."""
    info = lake.read_artifact(site.name, names.SESSION_RANKER, day, SESSION_RANKER_INFO)
    data = lake.read_artifact(site.name, names.SESSION_RANKER, day, SESSION_RANKER_FILE)
    if info is None or data is None or not json.loads(info).get("trained", False):
        return None
    document: dict[str, Any] = json.loads(data)
    return document
