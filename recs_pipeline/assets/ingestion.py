"""Ingestion: landing files -> raw events (+ quarantine) -> pages and per-day engagement."""

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from recs_pipeline.adapters.pages import page_fetcher
from recs_pipeline.adapters.pages.registry import PageRegistryStore
from recs_pipeline.adapters.sources import event_source
from recs_pipeline.adapters.sources.base import FileProblems
from recs_pipeline.assets.common import (
    LAKE_IO,
    SINGLE_RUN,
    DistinctCount,
    concat_days,
    daily_partitions,
    day_metadata,
    key,
    markdown_table,
    numeric,
    run_days,
    site_asset,
    site_pool,
)
from recs_pipeline.core import asset_names as names
from recs_pipeline.core import schemas
from recs_pipeline.core.day_frames import DayFrames
from recs_pipeline.core.engagement import daily_engagement, daily_pages
from recs_pipeline.core.events import DayEvents
from recs_pipeline.core.page_registry import due_for_fetch, merge, metadata_for_pages
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.resources import Clock, LakeResource, run_started


class PagesRunConfig(dg.Config):
    """Run configuration of ``pages``: ``force_refetch`` asks the CMS again about every page
    and overwrites the registry whatever its modified time (backfills after a CMS migration)."""

    force_refetch: bool = False


class IngestRunConfig(dg.Config):
    """Run configuration of ``<site>__ingest_events``.

    ``replace_with_empty``: let a day whose landing files give no event at all replace a lake
    partition that holds events. Off, such a day fails the run with the day and its stored row
    count (a landing area that vanished or was emptied must not wipe the lake)."""

    replace_with_empty: bool = False


PAGE_META = list(schemas.PAGE_METADATA_COLUMNS)


class LineAccountingError(RuntimeError):
    """A day's counts do not explain every line read (a reader lost or invented lines)."""


class EmptyReplacementRefused(RuntimeError):
    """A day read no event at all while the lake already holds events for it."""


def with_page_metadata(pages: pd.DataFrame, registry: pd.DataFrame | None) -> pd.DataFrame:
    """A day's pages with what the page registry says about them (nothing without a fetcher)."""
    pages = pages.copy()
    if registry is not None:
        pages[PAGE_META] = metadata_for_pages(registry, pages)
    else:
        for column in PAGE_META:
            pages[column] = None
    pages = pages.astype({"title": "string", "section": "string", "in_house": "boolean"})
    pages["published_at"] = pd.to_datetime(pages["published_at"], utc=True).astype(
        "datetime64[ms, UTC]"
    )
    return pages[[*schemas.PAGE_COLUMNS, *PAGE_META]]


class SourceDays:
    """One pass over an event source's days, shared by ``raw_events`` and ``quarantined_events``.

    The lake IO manager writes ``raw_events`` day by day, then ``quarantined_events``: each day is
    read from the source once, when ``raw_events`` asks for it; its events go straight to the
    lake and its quarantined lines (a small share of a day) wait for the second output. The
    counts of every day read make both outputs' metadata.
    """

    def __init__(
        self,
        reads: Iterator[tuple[dt.date, DayEvents]],
        log: Callable[[str], None],
        stored_rows: Callable[[str], int] | None = None,
        problems: FileProblems | None = None,
        day_metadata: Callable[[str, str, dict[str, float | int]], None] | None = None,
    ) -> None:
        self._reads = reads
        self._log = log
        self._problems = problems
        #: ``(day, asset name, numbers)``: a day's own numbers on its partition.
        self._day_metadata = day_metadata
        #: Rows the lake holds for a day; given, an empty day may not replace a non-empty one.
        self._stored_rows = stored_rows
        self._events: dict[str, pd.DataFrame] = {}
        self._quarantine: dict[str, pd.DataFrame] = {}
        self.totals: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.non_article: Counter[str] = Counter()
        self.users = DistinctCount()
        self.articles = DistinctCount()

    def events(self, day: str) -> pd.DataFrame:
        """The day's events, handed over once (the source is read once, oldest day first)."""
        self._read_until(day, self._events)
        return self._events.pop(day)

    def quarantine(self, day: str) -> pd.DataFrame:
        self._read_until(day, self._quarantine)
        return self._quarantine.pop(day)

    def _read_until(self, day: str, kept: dict[str, pd.DataFrame]) -> None:
        while day not in kept:
            try:
                read_day, result = next(self._reads)
            except StopIteration:
                raise LookupError(f"the event source gave nothing for {day}") from None
            key = read_day.isoformat()
            if result.events.empty and self._stored_rows is not None:
                stored = self._stored_rows(key)
                if stored:
                    problems = self._problems or FileProblems()
                    raise EmptyReplacementRefused(
                        f"{key}: the landing files gave no event ({result.lines_read:,} lines "
                        f"read; {len(problems.unreadable)} files unreadable, "
                        f"{len(problems.in_flight)} still being written) but the lake's "
                        f"raw_events partition holds {stored:,}; refusing to replace it with an "
                        "empty one (run config `replace_with_empty: true` allows it)"
                    )
            self._count(key, result)
            self._events[key] = result.events
            self._quarantine[key] = result.quarantine
            del result

    def _count(self, day: str, result: DayEvents) -> None:
        events = result.events
        off = result.unaccounted()
        if off:
            raise LineAccountingError(
                f"{day}: {off:+,} lines unaccounted for: {result.lines_read:,} lines read + "
                f"{result.extra_events:,} extra events + {result.from_other_files:,} events from "
                f"other days' files != {len(events):,} events + {result.duplicates:,} duplicates"
                f" + {len(result.quarantine):,} quarantined + {result.non_article_events:,} "
                f"non-article + {result.ignored_events:,} ignored + {result.other_days:,} of "
                "other days"
            )
        self.reasons.update(result.quarantined_by_reason)
        self.non_article.update(result.non_article_by_reason)
        self.totals.update(
            lines_read=result.lines_read,
            events=len(events),
            duplicates=result.duplicates,
            non_article_events=result.non_article_events,
            ignored_events=result.ignored_events,
            quarantined=len(result.quarantine),
            events_from_other_files=result.from_other_files,
            extra_events=result.extra_events,
            other_days_events=result.other_days,
            page_views=int((events["event_name"] == "page_view").sum()),
        )
        if self._day_metadata is not None:
            self._day_metadata(
                day,
                names.RAW_EVENTS,
                {
                    "dagster/row_count": len(events),
                    "lines_read": result.lines_read,
                    "events": len(events),
                    "duplicates": result.duplicates,
                    "quarantined": len(result.quarantine),
                    "non_article_events": result.non_article_events,
                    "ignored_events": result.ignored_events,
                    "other_days_events": result.other_days,
                    "events_from_other_files": result.from_other_files,
                    "extra_events": result.extra_events,
                    "lines_unaccounted": 0,
                    # The day's own distinct counts (the run's totals are stamped on every
                    # partition of a range by the output metadata below).
                    "users": int(events["user_id"].nunique()),
                    "articles": int(events["article_id"].nunique()),
                },
            )
            self._day_metadata(
                day,
                names.QUARANTINED_EVENTS,
                {
                    "dagster/row_count": len(result.quarantine),
                    **{f"reason_{k}": v for k, v in sorted(result.quarantined_by_reason.items())},
                },
            )
        self.users.add(events["user_id"])
        self.articles.add(events["article_id"])
        self._log(
            f"{day}: {len(events):,} events, {len(result.quarantine):,} quarantined, "
            f"{result.duplicates:,} duplicates"
        )

    def files_summary(self) -> dict[str, object]:
        problems = self._problems or FileProblems()
        # A file read for two days (an hour file at midnight) is named once.
        in_flight = list(dict.fromkeys(problems.in_flight))
        unreadable = list({row[0]: row for row in problems.unreadable}.values())
        meta: dict[str, object] = {
            **numeric(
                {
                    "unreadable_files": len(unreadable),
                    "files_in_flight": len(in_flight),
                    "files_outside_layout": len(problems.outside_layout),
                }
            )
        }
        if unreadable:
            meta["unreadable"] = markdown_table(
                pd.DataFrame(unreadable, columns=["file", "bytes", "error"]), rows=50
            )
        if in_flight:
            meta["in_flight"] = dg.MetadataValue.md(
                "\n".join(f"- `{name}`" for name in in_flight[:50])
            )
        if problems.outside_layout:
            meta["outside_layout"] = dg.MetadataValue.md(
                "\n".join(f"- `{name}`" for name in problems.outside_layout[:50])
            )
        return meta

    def events_summary(self) -> dict[str, object]:
        totals = dict(self.totals)
        return {
            **numeric({name: n for name, n in totals.items() if name != "page_views"}),
            # Checked for every day before it is written (``LineAccountingError`` otherwise).
            "lines_unaccounted": dg.MetadataValue.int(0),
            **self.files_summary(),
            **numeric({f"non_article_{name}": n for name, n in sorted(self.non_article.items())}),
            "users": dg.MetadataValue.int(len(self.users)),
            "articles": dg.MetadataValue.int(len(self.articles)),
            "page_views": dg.MetadataValue.int(totals.get("page_views", 0)),
            "dagster/row_count": dg.MetadataValue.int(totals.get("events", 0)),
        }

    def quarantine_summary(self) -> dict[str, object]:
        reasons = sorted(self.reasons.items())
        return {
            **self.files_summary(),
            "dagster/row_count": dg.MetadataValue.int(self.totals.get("quarantined", 0)),
            **numeric({f"reason_{name}": count for name, count in reasons}),
            "by_reason": markdown_table(
                pd.DataFrame(reasons, columns=["reason", "lines"]), rows=50
            ),
        }


def build_ingestion_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:
    partitions = daily_partitions(site)
    group = site.name

    @dg.multi_asset(
        name=f"{site.name}__ingest_events",
        outs={
            names.RAW_EVENTS: dg.AssetOut(
                key=key(site, names.RAW_EVENTS),
                io_manager_key=LAKE_IO,
                description=(
                    "Article events of the day (site time zone): parsed, validated, normalised "
                    "and de-duplicated by event id."
                ),
                kinds={"parquet", "pandas"},
                owners=list(site.owners),
                tags={"site": site.name, "stage": "ingestion"},
                is_required=False,
            ),
            names.QUARANTINED_EVENTS: dg.AssetOut(
                key=key(site, names.QUARANTINED_EVENTS),
                io_manager_key=LAKE_IO,
                description=(
                    "Landing lines that failed validation, each with its reason, file and line "
                    "number, so nothing is lost and the source can be fixed and re-ingested. "
                    "Written with every ingest of its day, even when only raw_events is selected."
                ),
                kinds={"parquet", "pandas"},
                owners=list(site.owners),
                tags={"site": site.name, "stage": "ingestion"},
                is_required=False,
            ),
        },
        partitions_def=partitions,
        group_name=group,
        backfill_policy=SINGLE_RUN,
        pool=site_pool(site),
        can_subset=True,
    )
    def ingest_events(
        context: dg.AssetExecutionContext, lake: LakeResource, config: IngestRunConfig
    ) -> Iterator[dg.Output[DayFrames] | dg.AssetMaterialization]:
        """One read of the landing files gives both outputs, so both are always written.

        Either asset may be selected alone (``--select <site>/raw_events``): the other one's
        partitions are still written from the same read and recorded as materialisations, so
        the lake's events and quarantine of a day always come from one read (events +
        quarantined + duplicates + … = lines read) and no quarantined line is ever dropped.
        """
        days = run_days(context)
        store = lake.lake()
        source = event_source(site)
        selected = set(context.selected_output_names)
        #: ``(asset, day) -> numbers`` of an output written beside the selection.
        beside: dict[tuple[str, str], dict[str, float | int]] = {}

        def output_day_metadata(day: str, asset: str, values: dict[str, float | int]) -> None:
            if asset in selected:
                context.add_asset_metadata(
                    numeric(values), asset_key=key(site, asset), partition_key=day
                )
            else:
                beside[(asset, day)] = values

        reads = SourceDays(
            source.read_days(
                [dt.date.fromisoformat(day) for day in days], now=run_started(context)
            ),
            log=lambda line: context.log.info(f"{site.name} {line}"),
            stored_rows=(
                None
                if config.replace_with_empty
                else partial(store.row_count, site.name, names.RAW_EVENTS)
            ),
            problems=getattr(source, "problems", None),
            day_metadata=output_day_metadata,
        )
        outputs = {
            names.RAW_EVENTS: DayFrames(
                {day: partial(reads.events, day) for day in days},
                columns=schemas.EVENT_COLUMNS,
                summary=reads.events_summary,
            ),
            names.QUARANTINED_EVENTS: DayFrames(
                {day: partial(reads.quarantine, day) for day in days},
                columns=schemas.QUARANTINE_COLUMNS,
                summary=reads.quarantine_summary,
            ),
        }
        # Events first: each day is read when raw_events asks for it, and only its small
        # quarantine waits for the second output.
        for name, frames in outputs.items():
            if name in selected:
                yield dg.Output(frames, output_name=name)
                continue
            written = 0
            for day, frame in frames:
                path = store.write_partition(site.name, name, day, frame)
                written += len(frame)
                yield dg.AssetMaterialization(
                    asset_key=key(site, name),
                    partition=day,
                    description=f"written with {', '.join(sorted(selected))} (one read)",
                    metadata={
                        **numeric(beside.get((name, day), {"dagster/row_count": len(frame)})),
                        "path": dg.MetadataValue.path(path),
                    },
                )
            context.log.info(
                f"{site.name}: {name} was not selected but comes from the same read: "
                f"{written:,} rows written for {len(days)} days"
            )

    @site_asset(
        site,
        names.PAGES,
        ins={names.RAW_EVENTS: dg.AssetIn(key(site, names.RAW_EVENTS))},
        talks_to_network=site.pages.fetcher != "none",
    )
    def pages(
        context: dg.AssetExecutionContext,
        raw_events: DayFrames,
        lake: LakeResource,
        config: PagesRunConfig,
    ) -> DayFrames:
        """Articles seen each day: id, most frequent path, first and last view, readers, and
        what the site's CMS says about them (title, publish time, section, in-house).

        Paths are looked up in the site's page registry; the CMS is asked only about new paths,
        paths without a publish date and articles published within the last day (all of them
        with ``force_refetch``), within the site's politeness limits. A failing CMS never fails
        the run: its pages keep their ids and are asked again next time.
        """
        # One day of events at a time; the articles of the run's days are few enough to keep.
        days = {day: daily_pages(raw_events.load(day), day) for day in run_days(context)}
        frame = concat_days(list(days.values()), schemas.PAGE_COLUMNS)
        meta: dict[str, dg.MetadataValue] = {}
        registry: pd.DataFrame | None = None
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
        # Each day is finished on its own, so a day's partition is the same in a range as alone.
        finished = {day: with_page_metadata(rows, registry) for day, rows in days.items()}
        for day, rows in finished.items():
            day_metadata(
                context,
                day,
                {
                    "dagster/row_count": len(rows),
                    "with_publish_time": int(rows["published_at"].notna().sum()),
                },
            )
        frame = concat_days(list(finished.values()), [*schemas.PAGE_COLUMNS, *PAGE_META])
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
        return DayFrames.of_days(finished, columns=[*schemas.PAGE_COLUMNS, *PAGE_META])

    @site_asset(
        site,
        names.ENGAGEMENT,
        ins={names.RAW_EVENTS: dg.AssetIn(key(site, names.RAW_EVENTS))},
    )
    def engagement(
        context: dg.AssetExecutionContext, raw_events: DayFrames, clock: Clock
    ) -> DayFrames:
        """Views, heartbeats and dwell seconds per (user, article, day), as of the run's moment.

        Computed one day at a time as the lake IO manager writes it, from that day's events only.
        """
        moments = clock.moments(context, site)
        users, articles = DistinctCount(), DistinctCount()
        dwell: list[np.ndarray] = []

        def day_engagement(day: str) -> pd.DataFrame:
            frame = daily_engagement(
                raw_events.load(day),
                day,
                moments[day],
                site.events.heartbeat_seconds,
            )
            users.add(frame["user_id"])
            articles.add(frame["article_id"])
            seconds = frame["dwell_seconds"].to_numpy(dtype="float64")
            dwell.append(seconds)
            day_metadata(
                context,
                day,
                {
                    "dagster/row_count": len(frame),
                    "users": frame["user_id"].nunique(),
                    "articles": frame["article_id"].nunique(),
                    "median_dwell_seconds": float(np.median(seconds)) if len(seconds) else 0.0,
                },
            )
            return frame

        def summary() -> dict[str, object]:
            seconds = np.concatenate(dwell) if dwell else np.empty(0)
            return {
                "dagster/row_count": dg.MetadataValue.int(len(seconds)),
                "users": dg.MetadataValue.int(len(users)),
                "articles": dg.MetadataValue.int(len(articles)),
                "median_dwell_seconds": dg.MetadataValue.float(
                    float(np.median(seconds)) if len(seconds) else 0.0
                ),
            }

        return DayFrames(
            {day: partial(day_engagement, day) for day in run_days(context)},
            columns=schemas.ENGAGEMENT_COLUMNS,
            summary=summary,
        )

    return [ingest_events, pages, engagement]
