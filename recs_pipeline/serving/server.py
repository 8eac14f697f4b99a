"""Building the API from the environment, warming live state from the lake, running uvicorn."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd
import redis
import uvicorn
from fastapi import FastAPI

from recs_pipeline import settings
from recs_pipeline.adapters.lake import Lake, lake_from_url
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.site import SiteConfig, read_sites
from recs_pipeline.serving.app import ServingState, create_app, site_runtime
from recs_pipeline.serving.live import LiveEvent, LiveStore, live_store
from recs_pipeline.serving.snapshot import reader_from_url

log = logging.getLogger(__name__)

WARM_BATCH: Final = 10_000


def lake_events(lake: Lake, site: str, hours: float) -> list[LiveEvent]:
    """The page views of the lake's newest ``hours`` of ``raw_events``, in time order."""
    if hours <= 0:
        return []
    days = lake.days(site, names.RAW_EVENTS)
    if not days:
        return []
    needed = int(np.ceil(hours / 24)) + 1
    frame = lake.read_partitions(site, names.RAW_EVENTS, days[-needed:])
    if frame is None or frame.empty:
        return []
    if "event_name" in frame.columns:
        frame = frame[frame["event_name"].astype(str) == "page_view"]
    frame = frame.dropna(subset=["user_id", "article_id", "ts"])
    if frame.empty:
        return []
    ts = pd.to_datetime(frame["ts"], utc=True)
    ms = (ts.astype("int64") // 1_000_000).to_numpy() if ts.dt.unit == "ns" else None
    if ms is None:
        ms = ts.dt.as_unit("ms").astype("int64").to_numpy()
    cutoff = int(ms.max()) - int(hours * 3_600_000)
    keep = ms >= cutoff
    users = frame["user_id"].astype(str).to_numpy()[keep]
    articles = frame["article_id"].astype(str).to_numpy()[keep]
    stamps = ms[keep]
    order = np.argsort(stamps, kind="stable")
    return [LiveEvent(str(users[i]), str(articles[i]), int(stamps[i])) for i in order]


def warm_from_lake(live: LiveStore, lake: Lake, sites: Sequence[SiteConfig]) -> dict[str, int]:
    """Replay each site's newest raw events into live state; a store that already has a clock
    (a shared Redis other workers fill) is left as it is."""
    warmed: dict[str, int] = {}
    for site in sites:
        began = time.perf_counter()
        try:
            if live.clock(site.name) is not None:
                continue
            events = lake_events(lake, site.name, site.serving.warm_hours)
            for start in range(0, len(events), WARM_BATCH):
                live.apply(site.name, events[start : start + WARM_BATCH])
        except (OSError, ValueError, redis.RedisError) as error:
            # The API starts anyway: published lists answer, live state fills from new events.
            log.warning("%s: no warm-up from the lake: %s", site.name, error)
            continue
        warmed[site.name] = len(events)
        log.info(
            "%s: warmed live state with %d events in %.1fs",
            site.name,
            len(events),
            time.perf_counter() - began,
        )
    return warmed


def build_state(
    sites: Sequence[SiteConfig],
    database_url: str,
    live: LiveStore,
    lake: Lake | None = None,
    refresh_seconds: float = 2.0,
) -> ServingState:
    reader = reader_from_url(database_url)
    runtimes = {site.name: site_runtime(site, reader) for site in sites}

    def warm(state: ServingState) -> None:
        if lake is not None:
            warm_from_lake(state.live, lake, [r.config for r in state.sites.values()])

    return ServingState(sites=runtimes, live=live, refresh_seconds=refresh_seconds, warm=warm)


def sites_from_environment(site_names: Sequence[str] = ()) -> list[SiteConfig]:
    """The sites to serve: those of ``RECS_SITES_DIR``, or the named ones (which must exist and
    parse)."""
    files = read_sites(settings.sites_dir())
    sites = files.sites
    # A broken site file is reported and skipped: the other sites are served.
    for error in files.broken:
        log.error("site file not served: %s", error)
    if site_names:
        broken = [name for name in site_names if files.broken_named(name) is not None]
        if broken:
            reasons = "; ".join(str(files.broken_named(name)) for name in broken)
            raise ValueError(f"site(s) {broken} cannot be served: {reasons}")
        unknown = sorted(set(site_names) - {s.name for s in sites})
        if unknown:
            raise ValueError(f"unknown site(s) {unknown}; sites: {[s.name for s in sites]}")
        sites = [s for s in sites if s.name in site_names]
    return list(sites)


def live_from_environment(sites: Sequence[SiteConfig]) -> LiveStore:
    """Live state from ``RECS_LIVE_URL`` (in process when unset)."""
    from recs_pipeline.serving.app import live_settings

    return live_store(
        os.environ.get("RECS_LIVE_URL"),
        {s.name: live_settings(s.serving) for s in sites},
        prefix=os.environ.get("RECS_LIVE_PREFIX", "recs:live:"),
    )


def app_from_environment(site_names: Sequence[str] = (), warm: bool = True) -> FastAPI:
    """The app as ``recs serve`` builds it: sites from ``RECS_SITES_DIR``, the serving database
    from ``RECS_DATABASE_URL``, live state from ``RECS_LIVE_URL`` (in process when unset), the
    lake from ``RECS_LAKE_URL`` for the warm-up."""
    sites = sites_from_environment(site_names)
    live = live_from_environment(sites)
    lake = lake_from_url(settings.lake_url()) if warm else None
    refresh = float(os.environ.get("RECS_SERVING_REFRESH_SECONDS", "2"))
    return create_app(build_state(sites, settings.database_url(), live, lake, refresh))


#: The sites a worker of ``recs serve --workers N`` serves (comma-separated; empty: all), set by
#: the parent for the workers it spawns.
WORKER_SITES_ENV: Final = "RECS_SERVE_WORKER_SITES"


def worker_app() -> FastAPI:
    """The app of one worker of ``recs serve --workers N`` (uvicorn's factory): the parent
    warmed the shared live state once before starting the workers."""
    names = [name for name in os.environ.get(WORKER_SITES_ENV, "").split(",") if name]
    return app_from_environment(names, warm=False)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    site_names: Sequence[str] = (),
    warm: bool = True,
    workers: int = 1,
) -> None:
    """Run the API until interrupted. ``workers`` > 1 runs that many uvicorn worker processes on
    the one port (the kernel spreads connections over them); they share live state, so it must
    be in Redis (``RECS_LIVE_URL``), and the lake warm-up runs once, here, before they start
    (workers warming at once would each replay the same events into the shared store)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    if workers == 1:
        app = app_from_environment(site_names, warm=warm)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return
    if not os.environ.get("RECS_LIVE_URL"):
        raise ValueError(
            "--workers needs RECS_LIVE_URL (Redis): live state in process would be one per worker, "
            "each seeing only the events posted to it"
        )
    sites = sites_from_environment(site_names)
    if warm:
        live = live_from_environment(sites)
        try:
            warm_from_lake(live, lake_from_url(settings.lake_url()), sites)
        finally:
            live.close()
    os.environ[WORKER_SITES_ENV] = ",".join(site_names)
    uvicorn.run(
        "recs_pipeline.serving.server:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )
