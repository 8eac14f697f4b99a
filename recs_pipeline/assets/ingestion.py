"""Ingestion: landing files -> raw events (+ quarantine) -> pages and per-day engagement."""

import datetime as dt
from collections import Counter

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.pages import page_fetcher
from recs_pipeline.adapters.pages.registry import PageRegistryStore
from recs_pipeline.adapters.sources import event_source
from recs_pipeline.assets.common import (
    LAKE_IO,
    SINGLE_RUN,
    concat_days,
    daily_partitions,
    key,
    markdown_table,
    numeric,
    of_days,
    run_days,
    site_asset,
)
from recs_pipeline.core import schemas
from recs_pipeline.core.engagement import daily_engagement, daily_pages
from recs_pipeline.core.page_registry import due_for_fetch, merge, metadata_for_pages
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.resources import Clock, LakeResource, run_started


class PagesRunConfig(dg.Config):
    """Run configuration of ``pages``: ``force_refetch`` asks the CMS again about every page
    and overwrites the registry whatever its modified time (backfills after a CMS migration)."""

    force_refetch: bool = False


def build_ingestion_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:
    partitions = daily_partitions(site)
    group = site.name

    @dg.multi_asset(
        name=f"{site.name}__ingest_events",
        outs={
            "raw_events": dg.AssetOut(
                key=key(site, "raw_events"),
                io_manager_key=LAKE_IO,
                description=(
                    "Article events of the day (site time zone): parsed, validated, normalised "
                    "and de-duplicated by event id."
                ),
                kinds={"parquet", "pandas"},
            ),
            "quarantined_events": dg.AssetOut(
                key=key(site, "quarantined_events"),
                io_manager_key=LAKE_IO,
                description=(
                    "Landing lines that failed validation, each with its reason, file and line "
                    "number, so nothing is lost and the source can be fixed and re-ingested."
                ),
                kinds={"parquet", "pandas"},
            ),
        },
        partitions_def=partitions,
        group_name=group,
        backfill_policy=SINGLE_RUN,
    )
    def ingest_events(context: dg.AssetExecutionContext) -> tuple[pd.DataFrame, pd.DataFrame]:
        source = event_source(site)
        days = [dt.date.fromisoformat(day) for day in run_days(context)]
        events: list[pd.DataFrame] = []
        quarantine: list[pd.DataFrame] = []
        totals: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        non_article: Counter[str] = Counter()
        for day, result in source.read_days(days, now=run_started(context)):
            events.append(result.events)
            quarantine.append(result.quarantine)
            reasons.update(result.quarantined_by_reason)
            totals.update(
                lines_read=result.lines_read,
                events=len(result.events),
                duplicates=result.duplicates,
                non_article_events=result.non_article_events,
                ignored_events=result.ignored_events,
                quarantined=len(result.quarantine),
            )
            non_article.update(result.non_article_by_reason)
            context.log.info(
                f"{site.name} {day}: {len(result.events):,} events, "
                f"{len(result.quarantine):,} quarantined, {result.duplicates:,} duplicates"
            )
        raw = pd.concat(events, ignore_index=True)
        bad = pd.concat(quarantine, ignore_index=True)
        context.add_output_metadata(
            {
                **numeric(dict(totals)),
                **numeric({f"non_article_{name}": n for name, n in sorted(non_article.items())}),
                "users": dg.MetadataValue.int(int(raw["user_id"].nunique())),
                "articles": dg.MetadataValue.int(int(raw["article_id"].nunique())),
                "page_views": dg.MetadataValue.int(int((raw["event_name"] == "page_view").sum())),
                "dagster/row_count": dg.MetadataValue.int(len(raw)),
            },
            output_name="raw_events",
        )
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(bad)),
                **numeric({f"reason_{name}": count for name, count in sorted(reasons.items())}),
                "by_reason": markdown_table(
                    pd.DataFrame(sorted(reasons.items()), columns=["reason", "lines"]), rows=50
                ),
            },
            output_name="quarantined_events",
        )
        return raw, bad

    @site_asset(
        site,
        "pages",
        ins={"raw_events": dg.AssetIn(key(site, "raw_events"))},
    )
    def pages(
        context: dg.AssetExecutionContext,
        raw_events: pd.DataFrame,
        lake: LakeResource,
        config: PagesRunConfig,
    ) -> pd.DataFrame:
        """Articles seen each day: id, most frequent path, first and last view, readers, and
        what the site's CMS says about them (title, publish time, section, in-house).

        Paths are looked up in the site's page registry; the CMS is asked only about new paths,
        paths without a publish date and articles published within the last day (all of them
        with ``force_refetch``), within the site's politeness limits. A failing CMS never fails
        the run: its pages keep their ids and are asked again next time.
        """
        frames = [daily_pages(of_days(raw_events, [day]), day) for day in run_days(context)]
        frame = concat_days(frames, schemas.PAGE_COLUMNS)
        meta: dict[str, dg.MetadataValue] = {}
        fetcher = page_fetcher(site)
        if fetcher is not None:
            store = PageRegistryStore(lake.lake(), site.name)
            registry = store.read()
            now = run_started(context)
            most_read = frame.sort_values("readers", ascending=False, kind="stable")
            due = due_for_fetch(
                registry, most_read, now, site.pages.refetch_recent_hours, config.force_refetch
            )
            postponed = max(0, len(due) - site.pages.max_pages_per_run)
            due = due.head(site.pages.max_pages_per_run)
            try:
                fetched = fetcher.fetch(due, now) if len(due) else pd.DataFrame()
            except Exception as error:  # a CMS problem must not stop ingestion
                context.log.error(f"{site.name}: page fetcher {fetcher.name} failed: {error!r}")
                fetched = pd.DataFrame()
            registry, counts = merge(registry, fetched, force=config.force_refetch)
            store.write(registry)
            statuses = Counter(fetched["status"]) if len(fetched) else Counter()
            meta = {
                **numeric(counts.as_metadata()),
                **numeric(
                    {
                        "pages_asked": len(due),
                        "pages_postponed": postponed,
                        "pages_skipped_circuit_open": statuses.get("skipped", 0),
                        "cms_requests": fetcher.stats.requests,
                        "cms_retries": fetcher.stats.retries,
                        "registry_paths": len(registry),
                    }
                ),
                "registry": dg.MetadataValue.path(store.path),
            }
            frame[list(schemas.PAGE_METADATA_COLUMNS)] = metadata_for_pages(registry, frame)
        else:
            for column in schemas.PAGE_METADATA_COLUMNS:
                frame[column] = None
        frame = frame.astype(
            {"title": "string", "section": "string", "in_house": "boolean"}
        ).assign(published_at=pd.to_datetime(frame["published_at"], utc=True))
        frame["published_at"] = frame["published_at"].astype("datetime64[ms, UTC]")
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "with_publish_time": dg.MetadataValue.int(int(frame["published_at"].notna().sum())),
                **meta,
                "most_read": markdown_table(
                    frame.sort_values("readers", ascending=False)[
                        ["date", "article_id", "path", "title", "readers", "views"]
                    ]
                ),
            }
        )
        return frame[[*schemas.PAGE_COLUMNS, *schemas.PAGE_METADATA_COLUMNS]]

    @site_asset(
        site,
        "engagement",
        ins={"raw_events": dg.AssetIn(key(site, "raw_events"))},
    )
    def engagement(
        context: dg.AssetExecutionContext, raw_events: pd.DataFrame, clock: Clock
    ) -> pd.DataFrame:
        """Views, heartbeats and dwell seconds per (user, article, day), as of the run's moment."""
        started = run_started(context)
        frames = []
        for day in run_days(context):
            as_of = clock.as_of_for(day, site.tz, started)
            frames.append(
                daily_engagement(
                    of_days(raw_events, [day]),
                    day,
                    as_of,
                    site.events.heartbeat_seconds,
                )
            )
        frame = concat_days(frames, schemas.ENGAGEMENT_COLUMNS)
        dwell = frame["dwell_seconds"].astype("float64") if not frame.empty else pd.Series([0.0])
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "users": dg.MetadataValue.int(int(frame["user_id"].nunique())),
                "articles": dg.MetadataValue.int(int(frame["article_id"].nunique())),
                "median_dwell_seconds": dg.MetadataValue.float(float(dwell.median())),
            }
        )
        return frame

    return [ingest_events, pages, engagement]
