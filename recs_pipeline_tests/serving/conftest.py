"""The serving API for real: uvicorn on a loopback port in a thread, lists published through the
project's publisher, httpx as the client."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.adapters.publishing import Publisher, RecommendationBatch, SqlitePublisher
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.serving.app import ServingState, create_app, live_settings
from recs_pipeline.serving.live import LiveStore, MemoryLiveStore
from recs_pipeline.serving.server import build_state
from recs_pipeline_tests.servers import free_port

SITE = "news"
AS_OF = dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC)
#: Event time of the tests: a fixed moment (the API's clock is event time).
T0 = int(dt.datetime(2026, 11, 3, 12, 30, tzinfo=dt.UTC).timestamp() * 1000)


def site_config(**serving: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "name": SITE,
            "start_date": "2026-11-01",
            "events": {
                "format": "snowplow",
                "location": "/nonexistent",
                "hosts": ["news.example.com"],
            },
            "serving": {"warm_hours": 0, **serving},
        }
    )


def publish_version(
    publisher: Publisher,
    as_of: dt.datetime,
    tag: str = "",
    users: Mapping[str, list[str]] | None = None,
    similar: Mapping[str, list[str]] | None = None,
    popular: list[str] | None = None,
) -> None:
    """One publish of all three model types; ``tag`` is appended to every recommended id, so a
    list shows which version it came from."""
    users = users if users is not None else {"u1": ["p1", "p2", "p3"], "u2": ["p2", "p4"]}
    similar = similar if similar is not None else {"a1": ["s1", "s2"], "a2": ["s3"]}
    popular = popular if popular is not None else [f"pop{i}" for i in range(1, 31)]

    def rows(lists: Mapping[str, list[str]]) -> pd.DataFrame:
        records = [
            (entity, rank, f"{article}{tag}", 1.0 / rank)
            for entity, articles in lists.items()
            for rank, article in enumerate(articles, start=1)
        ]
        return pd.DataFrame(
            records, columns=["source_entity_id", "rank", "recommended_article_id", "score"]
        )

    publisher.publish(
        SITE,
        as_of,
        [
            RecommendationBatch("user", rows(users)),
            RecommendationBatch("article", rows(similar)),
            RecommendationBatch("popular", rows({"default": popular})),
        ],
    )


@dataclass
class Api:
    url: str
    state: ServingState
    client: httpx.Client

    def events(self, items: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
        return self.client.post(f"/v1/sites/{SITE}/events", json=items, **kwargs)

    def recs(self, user: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(
            f"/v1/sites/{SITE}/recommendations", params={"user_id": user, **params}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port, in a thread (no signal handlers)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


StartApi = Callable[..., Api]


@pytest.fixture
def start_api() -> Iterator[StartApi]:
    """Start an API over a database URL; every server started is stopped after the test."""
    stack: list[tuple[ServerThread, httpx.Client]] = []

    def start(
        database_url: str,
        config: SiteConfig | None = None,
        live: LiveStore | None = None,
        lake: Lake | None = None,
        refresh_seconds: float = 0.1,
    ) -> Api:
        config = config or site_config()
        store = live or MemoryLiveStore({SITE: live_settings(config.serving)})
        state = build_state([config], database_url, store, lake, refresh_seconds)
        thread = ServerThread(create_app(state))
        url = thread.__enter__()
        client = httpx.Client(base_url=url, timeout=10)
        stack.append((thread, client))
        return Api(url, state, client)

    yield start
    for thread, client in reversed(stack):
        client.close()
        thread.__exit__()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> tuple[str, SqlitePublisher]:
    path = tmp_path / "recs.sqlite"
    publisher = SqlitePublisher(path)
    return f"sqlite:///{path}", publisher


def click(user: str, article: str, minutes: float, session: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "user_id": user,
        "article_id": article,
        "ts": T0 + int(minutes * 60_000),
    }
    if session is not None:
        item["session_id"] = session
    return item
