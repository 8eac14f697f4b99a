"""Serving: per-user recommendations and the publish into the serving database."""

import dataclasses
import datetime as dt
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.lake_windows import (
    SectionWindow,
    click_window,
    opened_window,
    readers_since,
)
from recs_pipeline.adapters.model_store import read_session_ranker, write_session_ranker
from recs_pipeline.adapters.publishing import RecommendationBatch
from recs_pipeline.adapters.serving_inputs import serving_inputs
from recs_pipeline.assets.common import (
    DistinctCount,
    day_metadata,
    key,
    markdown_table,
    previous_day_dep,
    run_days,
    site_asset,
    trailing_window,
)
from recs_pipeline.assets.models import als_params
from recs_pipeline.core import asset_names as names
from recs_pipeline.core import schemas
from recs_pipeline.core.day_frames import DayFrames, of_days
from recs_pipeline.core.serving import article_registry, recommendations_as_of
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import window_days
from recs_pipeline.resources import Clock, LakeResource, PublisherResource
from recs_pipeline.serving.session_ranker import (
    SESSION_RANKER_PARAM,
    session_ranker_as_of,
    session_ranker_document,
)


def read_articles_recommended(recommendations: pd.DataFrame, seen: pd.DataFrame) -> int:
    """How many recommendations point at an article the reader already opened (must be zero)."""
    if recommendations.empty or seen.empty:
        return 0
    pair = ["user_id", "article_id"]
    opened = seen[pair].drop_duplicates()
    return len(recommendations[pair].merge(opened, on=pair, how="inner"))


def _log_day(context: dg.AssetExecutionContext, prefix: str, line: str) -> None:
    context.log.info(f"{prefix}: {line}")


def build_serving_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:

    ranker = site.models.ranker

    @site_asset(
        site,
        names.USER_RECOMMENDATIONS,
        ins={
            names.ENGAGEMENT: dg.AssetIn(
                key(site, names.ENGAGEMENT),
                partition_mapping=trailing_window(site.engagement.read_days),
            ),
            names.POPULAR_ARTICLES: dg.AssetIn(key(site, names.POPULAR_ARTICLES)),
            names.RAW_EVENTS: dg.AssetIn(
                key(site, names.RAW_EVENTS),
                partition_mapping=trailing_window(ranker.history_days + 1),
            ),
        },
        deps=[
            key(site, names.INTERACTIONS),
            key(site, names.ALS_MODEL),
            key(site, names.SIMILAR_ARTICLES),
            key(site, names.RANKER_MODEL),
            key(site, names.PAGES),
            previous_day_dep(site, names.RECOMMENDATION_EVALUATION),
        ],
    )
    def user_recommendations_asset(
        context: dg.AssetExecutionContext,
        engagement: DayFrames,
        popular_articles: pd.DataFrame,
        raw_events: DayFrames,
        lake: LakeResource,
        clock: Clock,
    ) -> DayFrames:
        """Top-N articles for every reader of the engagement window, from the served chain.

        Every reader is ranked by the day's ranker (``ranker_model``): readers in its click
        history over their own candidates, the others over one shared list; without a ranker
        (too little data, or ``models.ranker.enabled: false``) everyone gets fresh popularity.
        A reader group where the previous day's evaluation found ALS (or fresh popularity)
        better than the ranker's chain is served from that source instead.
        Short lists are filled with fresh popularity, then the day's popular list. Nothing the
        reader opened over ``engagement.read_days`` (90 by default) is recommended. The
        metadata counts readers and scores by group (active, older, no_history) and source.
        Days are computed one at a time as the lake IO manager writes them: a range run holds
        one read set and one window of clicks, not the range's engagement.
        """
        per_user = site.models.per_user
        moments = clock.moments(context, site)
        clicks = click_window(raw_events, ranker.history_days + 1)
        opened = opened_window(engagement, site.engagement.read_days)
        sections = SectionWindow(lake.lake(), site, ranker.history_days + 1)
        users, articles, catalogue = DistinctCount(), DistinctCount(), DistinctCount()
        totals = {"rows": 0, "popular": 0, "ranker": 0}
        readers_by: dict[str, int] = {}
        samples: list[pd.DataFrame] = []

        def day_recommendations(day: str) -> pd.DataFrame:
            pairs = opened.rows(day)
            if pairs.empty:
                return pd.DataFrame(columns=list(schemas.USER_RECOMMENDATION_COLUMNS))
            seen = pairs[["user_id", "article_id"]].drop_duplicates().reset_index(drop=True)
            readers = readers_since(pairs, window_days(day, site.engagement.window_days)[0])
            as_of = moments[day]
            inputs = serving_inputs(
                lake.lake(),
                site,
                day,
                as_of,
                clicks=clicks.rows(day),
                seen=seen,
                popular=of_days(popular_articles, [day]),
                categories=sections.sections(day),
                readers=readers,
                ranker_day=day,
            )
            recs = recommendations_as_of(inputs, per_user, ranker.active_hours)
            already_read = read_articles_recommended(recs, seen)
            if already_read:
                raise ValueError(
                    f"{day}: {already_read} recommendations point at articles already read"
                )
            users.add(recs["user_id"])
            articles.add(recs["article_id"])
            catalogue.add(seen["article_id"])
            totals["rows"] += len(recs)
            totals["popular"] += int((recs["source"] == "popular").sum())
            totals["ranker"] += int((recs["source"] == "ranker").sum())
            firsts = recs.loc[recs["rank"] == 1]
            counts = firsts.groupby(["group", "source"]).size()
            day_readers: dict[str, int] = {}
            for group, source, count in zip(
                counts.index.get_level_values(0),
                counts.index.get_level_values(1),
                counts.to_numpy(),
                strict=True,
            ):
                name = f"readers_{group}_{source}"
                readers_by[name] = readers_by.get(name, 0) + int(count)
                day_readers[name] = int(count)
            day_metadata(
                context,
                day,
                {
                    "dagster/row_count": len(recs),
                    "users": int(recs["user_id"].nunique()),
                    "distinct_articles": int(recs["article_id"].nunique()),
                    "share_from_ranker": float((recs["source"] == "ranker").mean())
                    if len(recs)
                    else 0.0,
                    "share_from_popular": float((recs["source"] == "popular").mean())
                    if len(recs)
                    else 0.0,
                    **day_readers,
                },
            )
            if not samples and len(recs):
                samples.append(recs.sort_values(["user_id", "rank"]).head(20))
            return recs.assign(date=day)[list(schemas.USER_RECOMMENDATION_COLUMNS)]

        def summary() -> dict[str, dg.MetadataValue]:
            rows = totals["rows"]
            return {
                "dagster/row_count": dg.MetadataValue.int(rows),
                "users": dg.MetadataValue.int(len(users)),
                "distinct_articles": dg.MetadataValue.int(len(articles)),
                "catalogue_coverage": dg.MetadataValue.float(
                    len(articles) / len(catalogue) if len(catalogue) else 0.0
                ),
                "share_from_popular": dg.MetadataValue.float(
                    totals["popular"] / rows if rows else 0.0
                ),
                **{name: dg.MetadataValue.int(count) for name, count in sorted(readers_by.items())},
                "share_from_ranker": dg.MetadataValue.float(
                    totals["ranker"] / rows if rows else 0.0
                ),
                "sample": markdown_table(samples[0] if samples else pd.DataFrame(), rows=20),
            }

        return DayFrames(
            {day: partial(day_recommendations, day) for day in run_days(context)},
            columns=schemas.USER_RECOMMENDATION_COLUMNS,
            summary=summary,
        )

    live = site.serving
    ranker_days = live.session_ranker_days + 2  # training days, their warm-up day, the day

    @site_asset(
        site,
        names.SESSION_RANKER,
        ins={
            names.RAW_EVENTS: dg.AssetIn(
                key(site, names.RAW_EVENTS), partition_mapping=trailing_window(ranker_days)
            )
        },
        kinds={"lightgbm"},
        stored=False,
    )
    def session_ranker(
        context: dg.AssetExecutionContext,
        raw_events: DayFrames,
        lake: LakeResource,
        clock: Clock,
    ) -> dg.MaterializeResult:
        """The model the serving API scores each request with (``serving/session_ranker.py``).

        Trained on the sessions of the ``serving.session_ranker_days`` days before the day:
        their clicks are replayed through the API's own live state and, just before each
        session's last click, the request's candidates and features are read exactly as the
        API reads them; the label is the article read next. The day's own sessions are held
        out: ``beats_blend`` says whether it ranked them better (NDCG@20) than the API's
        default blend, and only then is it published with the day's user lists. In a range,
        only the newest day trains: it is the one the run leaves served (the older days'
        versions are kept for rollback, answered by the blend).
        """
        moments = clock.moments(context, site)
        days = run_days(context)
        served = set(days[-1:])
        window = click_window(raw_events, ranker_days)
        published = 0
        rows = []
        for day in days:
            document: dict[str, Any] | None = None
            if day not in served:
                info: dict[str, Any] = {
                    "trained": False,
                    "reason": "a later day of this run is the one served",
                }
            else:
                as_of = moments[day].to_pydatetime()
                model = session_ranker_as_of(
                    window.rows(day),
                    dt.date.fromisoformat(day),
                    as_of,
                    live,
                    site.tz,
                    progress=partial(_log_day, context, f"{site.name} {day}"),
                )
                if model is None:
                    info = {
                        "trained": False,
                        "reason": "no training session had its next article among the candidates",
                    }
                else:
                    info = {"trained": True, **model.info}
                    document = session_ranker_document(model)
                    published += bool(model.info.get("beats_blend"))
            # Every day records why it has (or has not) a ranker: a file left by an earlier
            # run of the day is never read without a fresh info saying it was trained.
            write_session_ranker(lake.lake(), site, day, document, info)
            validation = info.get("validation")
            scores = validation if isinstance(validation, dict) else {}
            ranker_ndcg = float(scores.get("session_ranker", {}).get("NDCG@20", 0.0))
            blend_ndcg = float(scores.get("blend", {}).get("NDCG@20", 0.0))
            day_metadata(
                context,
                day,
                {
                    "validation_ndcg20": ranker_ndcg,
                    "blend_ndcg20": blend_ndcg,
                    "validation_requests": int(info.get("validation_requests", 0) or 0),
                    "training_requests": int(info.get("requests_with_truth", 0) or 0),
                },
            )
            rows.append(
                {
                    "day": day,
                    "trained": bool(info.get("trained")),
                    "ndcg@20": round(ranker_ndcg, 4),
                    "blend ndcg@20": round(blend_ndcg, 4),
                    "beats_blend": bool(info.get("beats_blend", False)),
                    "note": str(info.get("reason", "")),
                }
            )
        return dg.MaterializeResult(
            metadata={
                "days_beating_blend": dg.MetadataValue.int(published),
                "days": markdown_table(pd.DataFrame(rows), rows=31),
            }
        )

    @site_asset(
        site,
        names.PUBLISHED_RECOMMENDATIONS,
        ins={
            names.USER_RECOMMENDATIONS: dg.AssetIn(key(site, names.USER_RECOMMENDATIONS)),
            names.SIMILAR_ARTICLES: dg.AssetIn(key(site, names.SIMILAR_ARTICLES)),
            names.POPULAR_ARTICLES: dg.AssetIn(key(site, names.POPULAR_ARTICLES)),
            names.PAGES: dg.AssetIn(key(site, names.PAGES)),
        },
        deps=[key(site, names.SESSION_RANKER)],
        kinds={"sqlite", "postgres"},
        stored=False,
        talks_to_network=True,
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=dt.timedelta(hours=site.publish.freshness_fail_hours),
            warn_window=dt.timedelta(hours=site.publish.freshness_warn_hours),
        ),
    )
    def published_recommendations(
        context: dg.AssetExecutionContext,
        user_recommendations: DayFrames,
        similar_articles: pd.DataFrame,
        popular_articles: pd.DataFrame,
        pages: pd.DataFrame,
        publisher: PublisherResource,
        lake: LakeResource,
        clock: Clock,
    ) -> dg.MaterializeResult:
        """User, article and default recommendations in the serving database.

        Each publish writes new model versions as ``pending`` and swaps them to ``current`` in one
        transaction; a failure marks them ``failed`` and the previous current ones stay served. A
        backfill of an older day is kept as ``stale`` and never replaces newer recommendations.
        """
        target = publisher.publisher()
        moments = clock.moments(context, site)
        articles = 0
        if len(pages):
            articles = target.upsert_articles(site.name, article_registry(pages))
        versions = []
        session_rankers = 0
        # In a range (a backfill), only the newest `keep_versions` days can survive retention:
        # publishing the older ones would write millions of rows only to delete them.
        days = run_days(context)
        to_publish = days[-site.publish.keep_versions :]
        if len(to_publish) < len(days):
            context.log.info(
                f"{site.name}: publishing the newest {len(to_publish)} of {len(days)} days; "
                "older versions would be pruned at once by keep_versions"
            )
        for day in to_publish:
            as_of = moments[day]
            users = user_recommendations.load(day)  # only the days published are read
            similar = of_days(similar_articles, [day])
            popular = of_days(popular_articles, [day])
            if popular.empty:
                context.log.warning(f"{site.name} {day}: nothing to publish (no popular list)")
                continue
            batches = [
                RecommendationBatch(
                    model_type="popular",
                    rows=popular.assign(source_entity_id="default").rename(
                        columns={"article_id": "recommended_article_id"}
                    )[["source_entity_id", "rank", "recommended_article_id", "score"]],
                    params=site.models.popular.model_dump(),
                    metrics={"articles": float(len(popular))},
                )
            ]
            document = read_session_ranker(lake.lake(), site, day)
            if not (live.session_ranker and document and document["info"].get("beats_blend")):
                document = None
            # The session ranker rides in the params of the user version (the popular one when
            # a day has no user lists): a snapshot of the API never pairs it with another
            # publish's lists.
            ranker_params = {} if document is None else {SESSION_RANKER_PARAM: document}
            session_rankers += document is not None
            if users.empty:
                batches[0] = dataclasses.replace(
                    batches[0], params={**batches[0].params, **ranker_params}
                )
            if not users.empty:
                user_params = {**dataclasses.asdict(als_params(site)), **ranker_params}
                batches.append(
                    RecommendationBatch(
                        model_type="user",
                        rows=users.rename(
                            columns={
                                "user_id": "source_entity_id",
                                "article_id": "recommended_article_id",
                            }
                        )[["source_entity_id", "rank", "recommended_article_id", "score"]],
                        params=user_params,
                        metrics={
                            "users": float(users["user_id"].nunique()),
                            "session_ranker": float(SESSION_RANKER_PARAM in user_params),
                            "share_from_ranker": float((users["source"] == "ranker").mean()),
                        },
                    )
                )
            if not similar.empty:
                batches.append(
                    RecommendationBatch(
                        model_type="article",
                        rows=similar.rename(
                            columns={
                                "article_id": "source_entity_id",
                                "similar_article_id": "recommended_article_id",
                            }
                        )[["source_entity_id", "rank", "recommended_article_id", "score"]],
                        params=site.models.similar.model_dump(),
                        metrics={"articles": float(similar["article_id"].nunique())},
                    )
                )
            versions.extend(
                target.publish(
                    site.name, as_of.to_pydatetime(), batches, keep=site.publish.keep_versions
                )
            )
        rows = sum(version.rows for version in versions)
        summary = pd.DataFrame(
            [
                {
                    "model": version.id,
                    "type": version.model_type,
                    "status": version.status,
                    "as_of": version.as_of.isoformat(),
                    "rows": version.rows,
                }
                for version in versions
            ]
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(rows),
                "model_versions": dg.MetadataValue.int(len(versions)),
                "days_not_published": dg.MetadataValue.int(len(days) - len(to_publish)),
                "articles_upserted": dg.MetadataValue.int(articles),
                "session_rankers_published": dg.MetadataValue.int(session_rankers),
                "current": dg.MetadataValue.int(
                    sum(1 for version in versions if version.status == "current")
                ),
                "versions": markdown_table(summary, rows=30),
            }
        )

    return [user_recommendations_asset, session_ranker, published_recommendations]
