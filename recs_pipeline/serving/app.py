"""The HTTP API: published lists refreshed by live state (docs/serving.md).

``create_app`` builds a FastAPI app for some sites over a serving database and a live store;
``recs serve`` runs it on uvicorn. Every request reads one snapshot reference (so its answer
comes from one publish) and the live state at its event-time clock.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeVar
from zoneinfo import ZoneInfo

import orjson
import redis
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from recs_pipeline.adapters.pages import page_rules
from recs_pipeline.core.site import ServingConfig, SiteConfig
from recs_pipeline.core.urls import PageRules
from recs_pipeline.serving.intake import parse_events
from recs_pipeline.serving.live import LiveSettings, LiveStore, ReaderView, live_settings
from recs_pipeline.serving.metrics import Metrics, MetricsMiddleware
from recs_pipeline.serving.scoring import (
    MINUTE_MS,
    Scored,
    Source,
    blend,
    combine_neighbours,
    current_session,
    fill,
    session_weights,
    trend,
)
from recs_pipeline.serving.session_ranker import RequestSignals, SessionRanker, read_signals
from recs_pipeline.serving.snapshot import Reader, Refresher, Snapshot, SnapshotHolder

log = logging.getLogger(__name__)

DEFAULT_K: Final = 20
T = TypeVar("T")


@dataclass
class SiteRuntime:
    config: SiteConfig
    holder: SnapshotHolder
    rules: PageRules
    live: LiveSettings
    #: The bearer key writes must present; None with ``write_key_env`` unset (open writes).
    write_key: str | None = None
    #: ``write_key_env`` is set but the variable is not: writes are refused (fail closed).
    write_key_missing: bool = False

    @property
    def serving(self) -> ServingConfig:
        return self.config.serving


@dataclass
class ServingState:
    sites: dict[str, SiteRuntime]
    live: LiveStore
    metrics: Metrics = field(default_factory=Metrics)
    refresh_seconds: float = 2.0
    #: Called once at start-up before serving (the lake warm-up), if set.
    warm: Callable[[ServingState], None] | None = None
    started: float = field(default_factory=time.time)


def site_runtime(
    config: SiteConfig, reader: Reader, environ: dict[str, str] | None = None
) -> SiteRuntime:
    env = os.environ if environ is None else environ
    key_env = config.serving.write_key_env
    key = env.get(key_env) if key_env else None
    return SiteRuntime(
        config=config,
        holder=SnapshotHolder(config.name, reader),
        rules=page_rules(config),
        live=live_settings(config.serving),
        write_key=key or None,
        write_key_missing=bool(key_env) and not key,
    )


# -- response models (the contract: add fields, never rename) -----------------------------------


class Item(BaseModel):
    article_id: str
    score: float
    source: Source
    #: Live items of ``/popular``: the shortest half-life's click rate over the longest's
    #: (> 1 rising, < 1 fading).
    trend: float | None = None


class ListResponse(BaseModel):
    site: str
    as_of: str | None
    model_version: int | None
    versions: dict[str, int]
    items: list[Item]


class RecommendationsResponse(ListResponse):
    user_id: str
    #: What ordered the list's head: ``session_ranker`` (the published model over live
    #: features) or ``blend`` (live popularity + session co-visits, when no ranker is published).
    ranked_by: str = "blend"


class SimilarResponse(ListResponse):
    article_id: str


class RejectedItem(BaseModel):
    index: int
    reason: str


class EventsResponse(BaseModel):
    accepted: int
    rejected: list[RejectedItem]
    clock: str | None


class Problem(BaseModel):
    detail: str


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": Problem, "description": "unknown site"},
    422: {"description": "invalid parameters"},
}

EVENTS_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "user_id": {"type": "string"},
                            "article_id": {"type": "string"},
                            "url": {"type": "string"},
                            "ts": {
                                "oneOf": [
                                    {"type": "integer", "description": "ms since the epoch"},
                                    {"type": "string", "description": "ISO 8601"},
                                ]
                            },
                            "session_id": {"type": "string"},
                        },
                        "required": ["user_id", "ts"],
                    },
                }
            }
        },
    }
}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def _versions(snapshot: Snapshot) -> dict[str, int]:
    return {kind: lists.model_id for kind, lists in snapshot.models.items()}


def _model_version(snapshot: Snapshot) -> int | None:
    for kind in ("user", "popular", "article"):
        if kind in snapshot.models:
            return snapshot.models[kind].model_id
    return None


def _items(scored: Sequence[Scored]) -> list[Item]:
    return [Item(article_id=s.article_id, score=round(s.score, 6), source=s.source) for s in scored]


SiteName = Annotated[str, Path(max_length=64, description="site name (its YAML's `name`)")]
Exclude = Annotated[str | None, Query(max_length=20_000, description="comma-separated article ids")]
K = Annotated[int, Query(ge=1, description="list size (capped at the site's max_k)")]
UserId = Annotated[str, Query(min_length=1, max_length=256)]
ArticleParam = Annotated[str | None, Query(max_length=256)]
ArticlePath = Annotated[str, Path(max_length=256)]


def create_app(state: ServingState) -> FastAPI:
    """The API over ``state`` (its sites, their snapshot holders, the live store)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for runtime in state.sites.values():
            runtime.holder.refresh()
        if state.warm is not None:
            state.warm(state)
        refresher = Refresher([r.holder for r in state.sites.values()], state.refresh_seconds)
        refresher.start()
        try:
            yield
        finally:
            refresher.stop()

    app = FastAPI(
        title="recs_pipeline serving API",
        version="1",
        description="Published recommendation lists refreshed by live popularity and sessions.",
        lifespan=lifespan,
    )
    metrics = state.metrics

    def site_of(site: str) -> SiteRuntime:
        runtime = state.sites.get(site)
        if runtime is None:
            raise HTTPException(status_code=404, detail=f"unknown site {site!r}")
        return runtime

    def live_or(default: T, call: Callable[[], T]) -> T:
        """A live-state read; when the store fails, the answer goes on without it."""
        try:
            return call()
        except (redis.RedisError, OSError) as error:
            log.warning("live store unavailable: %s", error)
            return default

    @app.post(
        "/v1/sites/{site}/events",
        response_model=EventsResponse,
        openapi_extra=EVENTS_BODY,
        responses={
            **ERRORS,
            400: {"model": Problem, "description": "not JSON"},
            401: {"model": Problem, "description": "missing or wrong write key"},
            413: {"model": Problem, "description": "body or batch too large"},
            503: {"model": Problem, "description": "live store unavailable"},
        },
    )
    async def post_events(site: SiteName, request: Request) -> Any:
        runtime = site_of(site)
        cfg = runtime.serving
        if runtime.write_key_missing:
            raise HTTPException(401, "this site's write key is not configured on the server")
        if runtime.write_key is not None:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), runtime.write_key.encode()
            ):
                return JSONResponse(
                    {"detail": "missing or wrong bearer write key"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            raise HTTPException(413, f"body over {cfg.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_body_bytes:
                raise HTTPException(413, f"body over {cfg.max_body_bytes} bytes")
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"body is not JSON: {error}") from None
        if not isinstance(items, list):
            raise HTTPException(422, "body must be a JSON array of events")
        if len(items) > cfg.max_events:
            raise HTTPException(413, f"more than {cfg.max_events} events in one post")
        accepted, rejected = parse_events(items, runtime.rules, int(time.time() * 1000))
        try:
            state.live.apply(site, accepted)
        except (redis.RedisError, OSError) as error:
            raise HTTPException(503, f"live store unavailable: {error}") from None
        if accepted:
            metrics.events_accepted.labels(site).inc(len(accepted))
        for r in rejected:
            metrics.events_rejected.labels(site, r.reason).inc()
        return {
            "accepted": len(accepted),
            "rejected": [{"index": r.index, "reason": r.reason} for r in rejected],
            "clock": _iso(live_or(None, lambda: state.live.clock(site))),
        }

    @app.get(
        "/v1/sites/{site}/recommendations",
        response_model=RecommendationsResponse,
        responses=ERRORS,
    )
    async def recommendations(
        site: SiteName,
        user_id: UserId,
        k: K = DEFAULT_K,
        article_id: ArticleParam = None,
        exclude: Exclude = None,
    ) -> Any:
        runtime = site_of(site)
        snapshot = runtime.holder.snapshot  # one reference: one publish for this answer
        items, clock, ranked = recommend(
            runtime, snapshot, state.live, user_id, k, article_id, exclude
        )
        return {
            "site": site,
            "user_id": user_id,
            "ranked_by": ranked,
            "as_of": _iso(clock) or _snapshot_as_of(snapshot),
            "model_version": _model_version(snapshot),
            "versions": _versions(snapshot),
            "items": _items(items),
        }

    @app.get(
        "/v1/sites/{site}/articles/{article_id}/similar",
        response_model=SimilarResponse,
        responses=ERRORS,
    )
    async def similar(
        site: SiteName,
        article_id: ArticlePath,
        k: K = DEFAULT_K,
    ) -> Any:
        runtime = site_of(site)
        snapshot = runtime.holder.snapshot
        cfg = runtime.serving
        k = min(k, cfg.max_k)
        live = state.live
        neighbours: list[tuple[str, float]] = live_or(
            [], lambda: live.neighbours(site, article_id, cfg.candidates)
        )
        popular: list[tuple[str, float]] = live_or(
            [], lambda: live.popular(site, runtime.live.half_lives_ms[0], cfg.candidates)
        )
        chain: list[tuple[Source, Sequence[tuple[str, float]]]] = [
            ("similar", snapshot.similar(article_id, cfg.candidates)),
            ("live", neighbours),
            ("live", popular),
            ("popular", snapshot.popular()),
            ("popular", [(a, 0.0) for a in snapshot.catalogue]),
        ]
        items = fill(k, chain, excluded={article_id})
        return {
            "site": site,
            "article_id": article_id,
            "as_of": _iso(live_or(None, lambda: live.clock(site))) or _snapshot_as_of(snapshot),
            "model_version": snapshot.models["article"].model_id
            if "article" in snapshot.models
            else _model_version(snapshot),
            "versions": _versions(snapshot),
            "items": _items(items),
        }

    @app.get("/v1/sites/{site}/popular", response_model=ListResponse, responses=ERRORS)
    async def popular(site: SiteName, k: K = DEFAULT_K) -> Any:
        runtime = site_of(site)
        snapshot = runtime.holder.snapshot
        cfg = runtime.serving
        k = min(k, cfg.max_k)
        live = state.live
        popular: list[tuple[str, float]] = live_or(
            [], lambda: live.popular(site, runtime.live.half_lives_ms[0], k)
        )
        chain: list[tuple[Source, Sequence[tuple[str, float]]]] = [
            ("live", popular),
            ("popular", snapshot.popular()),
            ("popular", [(a, 0.0) for a in snapshot.catalogue]),
        ]
        return {
            "site": site,
            "as_of": _iso(live_or(None, lambda: live.clock(site))) or _snapshot_as_of(snapshot),
            "model_version": snapshot.models["popular"].model_id
            if "popular" in snapshot.models
            else None,
            "versions": _versions(snapshot),
            "items": with_trend(runtime, _items(fill(k, chain))),
        }

    def with_trend(runtime: SiteRuntime, items: list[Item]) -> list[Item]:
        lives = runtime.live.half_lives_ms
        ids = [i.article_id for i in items if i.source == "live"]
        if len(lives) < 2 or not ids:
            return items
        site = runtime.config.name
        empty: list[dict[str, float]] = [{}, {}]
        short, long = live_or(empty, lambda: state.live.counts_at(site, [lives[0], lives[-1]], ids))
        for item in items:
            if item.article_id in short and item.article_id in long:
                value = trend(short[item.article_id], long[item.article_id], lives[0], lives[-1])
                item.trend = round(value, 4)
        return items

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready (body says why)"}})
    async def readyz() -> JSONResponse:
        now = time.time()
        sites: dict[str, Any] = {}
        ready = True
        for name, runtime in state.sites.items():
            snapshot = runtime.holder.snapshot
            status = runtime.holder.status
            clock = live_or(None, lambda name=name: state.live.clock(name))  # type: ignore[misc]
            versions = {
                kind: {
                    "id": lists.model_id,
                    "as_of": lists.as_of.isoformat(),
                    "age_seconds": round(now - lists.as_of.timestamp(), 1),
                    "age_at_live_clock_seconds": None
                    if clock is None
                    else round(clock / 1000 - lists.as_of.timestamp(), 1),
                    "rows": len(lists),
                }
                for kind, lists in snapshot.models.items()
            }
            has_lists = bool(snapshot.models) or bool(snapshot.catalogue)
            ready = ready and has_lists
            sites[name] = {
                "database": "ok" if status.database_ok else "unreachable",
                "database_error": status.last_error,
                "serving_last_good_since": status.last_load,
                "versions": versions,
                "live_clock": _iso(clock),
                "live_events": live_or(0, lambda name=name: state.live.events(name)),  # type: ignore[misc]
                "session_ranker": _ranker_status(snapshot, runtime.serving.session_ranker),
            }
        live_ok = state.live.ping()
        body = {
            "ready": ready,
            "live_store": "ok" if live_ok else "unreachable",
            "sites": sites,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        now = time.time()
        for name, runtime in state.sites.items():
            snapshot = runtime.holder.snapshot
            for kind, lists in snapshot.models.items():
                metrics.version_age.labels(name, kind).set(now - lists.as_of.timestamp())
                metrics.version_id.labels(name, kind).set(lists.model_id)
            metrics.database_up.labels(name).set(1 if runtime.holder.status.database_ok else 0)
            clock = live_or(None, lambda name=name: state.live.clock(name))  # type: ignore[misc]
            if clock is not None:
                metrics.live_clock.labels(name).set(clock / 1000)
        metrics.live_up.set(1 if state.live.ping() else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _ranker_status(snapshot: Snapshot, enabled: bool) -> dict[str, Any] | None:
    """The published session ranker: the day it was trained for and its held-out scores."""
    ranker = snapshot.session_ranker
    if ranker is None:
        return None
    validation = ranker.info.get("validation", {})
    return {
        "used": enabled,
        "day": ranker.info.get("day"),
        "trees": ranker.booster.num_trees(),
        "validation_ndcg20": validation.get("session_ranker", {}).get("NDCG@20"),
        "blend_ndcg20": validation.get("blend", {}).get("NDCG@20"),
    }


def _snapshot_as_of(snapshot: Snapshot) -> str | None:
    as_of = snapshot.as_of
    return None if as_of is None else as_of.isoformat().replace("+00:00", "Z")


#: The session's last distinct articles whose co-visits the session ranker reads.
SIGNAL_DEPTH: Final = 3


def ranked_by(
    ranker: SessionRanker,
    signals: RequestSignals,
    tz: ZoneInfo,
    k: int,
    excluded: Iterable[str],
) -> list[Scored]:
    """The ranker's top ``k`` with scores in (0, 1) and the signal that offered each item."""
    session = {a for found in signals.neighbours[:1] for a, _ in found}
    live = {a for a, _ in signals.popular}
    personal = {a for a, _ in signals.personal}
    out = []
    for article, score in ranker.rank(signals, tz, k, excluded):
        source: Source = (
            "session"
            if article in session
            else "live"
            if article in live
            else "personal"
            if article in personal
            else "similar"
        )
        out.append(Scored(article, 1.0 / (1.0 + math.exp(-score)), source))
    return out


def recommend(
    runtime: SiteRuntime,
    snapshot: Snapshot,
    live: LiveStore,
    user_id: str,
    k: int,
    article_id: str | None = None,
    exclude: str | None = None,
) -> tuple[list[Scored], int | None, str]:
    """One reader's list, its clock and what ranked it: the session ranker published with the
    lists (over live features: ``serving/session_ranker.py``) or, without one, the blend; then
    similar, popular and the catalogue until ``k``.

    Blend (``scoring.blend``): live popularity at the first half-life + co-visitation from the
    session's last click(s) (the article being read counts as the newest), each scaled to its
    maximum, over candidates that include the published personal list. Never an article the
    reader read (live clicks, the article being read, ``exclude``; the published lists already
    leave out what the batch saw read).
    """
    cfg = runtime.serving
    site = runtime.config.name
    k = min(k, cfg.max_k)
    # Candidates per signal: plenty for k (more only costs time: an article far down the live
    # list can still enter through the session's co-visits or the personal list).
    candidates = min(cfg.candidates, max(3 * k, 50))

    def safe(default: T, call: Callable[[], T]) -> T:
        try:
            return call()
        except (redis.RedisError, OSError) as error:
            log.warning("live store unavailable: %s", error)
            return default

    half_life = runtime.live.half_lives_ms[0]
    view: ReaderView = safe(
        ReaderView(None, set(), [], []),
        lambda: live.reader_view(site, user_id, half_life, candidates),
    )
    clock = view.clock
    excluded = set(view.read)
    if exclude:
        excluded.update(a.strip() for a in exclude.split(",") if a.strip())
    session = (
        current_session(view.clicks, clock, int(cfg.session_gap_minutes * MINUTE_MS))
        if clock is not None
        else []
    )
    anchors = session_weights(session, cfg.session_depth)
    if article_id:
        excluded.add(article_id)
        anchors = [(article_id, 1.0)] + [(a, w / 2) for a, w in anchors if a != article_id]
        anchors = anchors[: cfg.session_depth]
    found: list[list[tuple[str, float]]] = safe(
        [[] for _ in anchors], lambda: live.neighbours_of(site, [a for a, _ in anchors], candidates)
    )
    covisit = combine_neighbours([(w, f) for (_, w), f in zip(anchors, found, strict=True)])
    popular = [(a, v) for a, v in view.popular if a not in excluded]
    personal = snapshot.personal(user_id, candidates)
    ranker = snapshot.session_ranker if cfg.session_ranker else None
    signals = (
        safe(
            None,
            lambda: read_signals(
                live,
                site,
                user_id,
                runtime.live,
                n=candidates,
                depth=SIGNAL_DEPTH,
                session_gap_ms=int(cfg.session_gap_minutes * MINUTE_MS),
                article_id=article_id,
                personal=personal,
                similar_of=lambda a: snapshot.similar(a, candidates),
                view=view,
            ),
        )
        if ranker is not None
        else None
    )
    first: list[Scored]
    ranked = "blend"
    if ranker is not None and signals is not None:
        first = ranked_by(ranker, signals, runtime.config.tz, k, excluded)
        ranked = "session_ranker"
    else:
        first = blend(
            dict(popular),
            covisit,
            personal,
            live_weight=cfg.live_weight,
            session_weight=cfg.session_weight,
            personal_weight=cfg.personal_weight,
            excluded=excluded,
        )
    similar: list[tuple[str, float]] = []
    for anchor, _ in anchors:
        similar.extend(snapshot.similar(anchor, candidates))
    chain: list[tuple[Source, Sequence[tuple[str, float]]]] = [
        ("similar", similar),
        ("popular", snapshot.popular()),
        ("popular", [(a, 0.0) for a in snapshot.catalogue]),
    ]
    return fill(k, chain, excluded=excluded, first=first), clock, ranked
