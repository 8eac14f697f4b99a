"""Serving: per-user recommendations and the publish into the serving database."""

import dataclasses

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.publishing import RecommendationBatch
from recs_pipeline.assets.common import (
    concat_days,
    key,
    markdown_table,
    of_days,
    run_days,
    site_asset,
    trailing_window,
)
from recs_pipeline.assets.models import als_params, load_als
from recs_pipeline.assets.ranking import article_sections, click_window, load_day_ranker
from recs_pipeline.core import schemas
from recs_pipeline.core.day_frames import DayFrames
from recs_pipeline.core.serving import ServingInputs, article_registry, recommendations_as_of
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import window_days
from recs_pipeline.resources import Clock, LakeResource, PublisherResource, run_started


def read_articles_recommended(recommendations: pd.DataFrame, interactions: pd.DataFrame) -> int:
    """How many recommendations point at an article the user already read (must be zero)."""
    if recommendations.empty or interactions.empty:
        return 0
    pair = [schemas.DATE, "user_id", "article_id"]
    read = interactions[pair].drop_duplicates()
    return len(recommendations[pair].merge(read, on=pair, how="inner"))


def build_serving_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:

    ranker = site.models.ranker

    @site_asset(
        site,
        "user_recommendations",
        ins={
            "interactions": dg.AssetIn(key(site, "interactions")),
            "engagement": dg.AssetIn(
                key(site, "engagement"),
                partition_mapping=trailing_window(site.engagement.window_days),
            ),
            "popular_articles": dg.AssetIn(key(site, "popular_articles")),
            "similar_articles": dg.AssetIn(key(site, "similar_articles")),
            "raw_events": dg.AssetIn(
                key(site, "raw_events"),
                partition_mapping=trailing_window(ranker.history_days + 1),
            ),
        },
        deps=[key(site, "als_model"), key(site, "ranker_model"), key(site, "pages")],
    )
    def user_recommendations_asset(
        context: dg.AssetExecutionContext,
        interactions: pd.DataFrame,
        engagement: pd.DataFrame,
        popular_articles: pd.DataFrame,
        similar_articles: pd.DataFrame,
        raw_events: DayFrames,
        lake: LakeResource,
        clock: Clock,
    ) -> pd.DataFrame:
        """Top-N articles per reader of the window: the LightGBM ranker, or the ALS/popular path.

        Readers active in the last hours are ranked by the day's ranker (``ranker_model``) over
        their candidates; the others, and everyone when the ranker is missing or switched off
        (``models.ranker.enabled``), get ALS scores filled with popular articles. Every reader seen
        in the window gets a list, and nothing the reader already opened in the window is
        recommended, whether or not it counted as a read for the model.
        """
        per_user = site.models.per_user
        started = run_started(context)
        clicks = click_window(raw_events, ranker.history_days + 1)
        frames = []
        for day in run_days(context):
            seen = _seen_in_window(engagement, day, site.engagement.window_days)
            popular = of_days(popular_articles, [day])
            if seen.empty:
                continue
            as_of = clock.as_of_for(day, site.tz, started)
            model = load_day_ranker(lake.lake(), site, day) if ranker.enabled else None
            inputs = ServingInputs(
                moment=as_of,
                tz=site.tz,
                clicks=clicks.rows(day),
                seen=seen,
                popular=popular,
                als=load_als(lake, site, day),
                similar=of_days(similar_articles, [day]),
                ranker=model,
                categories=article_sections(
                    lake.lake(), site, window_days(day, ranker.history_days + 1)
                ),
            )
            recs = recommendations_as_of(inputs, per_user, ranker.active_hours)
            frames.append(recs.assign(date=day))
        frame = concat_days(frames, schemas.USER_RECOMMENDATION_COLUMNS)
        already_read = read_articles_recommended(
            frame, _seen_by_day(engagement, run_days(context), site.engagement.window_days)
        )
        if already_read:
            raise ValueError(f"{already_read} recommendations point at articles already read")
        users = int(frame["user_id"].nunique()) if len(frame) else 0
        articles_in_recs = int(frame["article_id"].nunique()) if len(frame) else 0
        catalogue = int(interactions["article_id"].nunique()) if len(interactions) else 0
        from_als = float((frame["source"] == "als").mean()) if len(frame) else 0.0
        from_ranker = float((frame["source"] == "ranker").mean()) if len(frame) else 0.0
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "users": dg.MetadataValue.int(users),
                "distinct_articles": dg.MetadataValue.int(articles_in_recs),
                "catalogue_coverage": dg.MetadataValue.float(
                    articles_in_recs / catalogue if catalogue else 0.0
                ),
                "share_from_als": dg.MetadataValue.float(from_als),
                "share_from_ranker": dg.MetadataValue.float(from_ranker),
                "sample": markdown_table(frame.sort_values(["user_id", "rank"]), rows=20),
            }
        )
        return frame

    @site_asset(
        site,
        "published_recommendations",
        ins={
            "user_recommendations": dg.AssetIn(key(site, "user_recommendations")),
            "similar_articles": dg.AssetIn(key(site, "similar_articles")),
            "popular_articles": dg.AssetIn(key(site, "popular_articles")),
            "pages": dg.AssetIn(key(site, "pages")),
        },
        kinds={"sqlite", "postgres"},
        stored=False,
    )
    def published_recommendations(
        context: dg.AssetExecutionContext,
        user_recommendations: pd.DataFrame,
        similar_articles: pd.DataFrame,
        popular_articles: pd.DataFrame,
        pages: pd.DataFrame,
        publisher: PublisherResource,
        clock: Clock,
    ) -> dg.MaterializeResult:
        """User, article and default recommendations in the serving database.

        Each publish writes new model versions as ``pending`` and swaps them to ``current`` in one
        transaction; a failure marks them ``failed`` and the previous current ones stay served. A
        backfill of an older day is kept as ``stale`` and never replaces newer recommendations.
        """
        target = publisher.publisher()
        started = run_started(context)
        articles = 0
        if len(pages):
            articles = target.upsert_articles(site.name, article_registry(pages))
        versions = []
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
            as_of = clock.as_of_for(day, site.tz, started)
            users = of_days(user_recommendations, [day])
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
            if not users.empty:
                batches.append(
                    RecommendationBatch(
                        model_type="user",
                        rows=users.rename(
                            columns={
                                "user_id": "source_entity_id",
                                "article_id": "recommended_article_id",
                            }
                        )[["source_entity_id", "rank", "recommended_article_id", "score"]],
                        params=dataclasses.asdict(als_params(site)),
                        metrics={
                            "users": float(users["user_id"].nunique()),
                            "share_from_als": float((users["source"] == "als").mean()),
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
                "current": dg.MetadataValue.int(
                    sum(1 for version in versions if version.status == "current")
                ),
                "versions": markdown_table(summary, rows=30),
            }
        )

    return [user_recommendations_asset, published_recommendations]


def _seen_in_window(engagement: pd.DataFrame, day: str, days: int) -> pd.DataFrame:
    """(user, article) pairs opened in the window ending with ``day``, weight 1 each."""
    rows = of_days(engagement, window_days(day, days))
    if rows.empty:
        return pd.DataFrame(columns=["user_id", "article_id", "weight"])
    pairs = rows[["user_id", "article_id"]].drop_duplicates()
    return pairs.assign(weight=1.0).reset_index(drop=True)


def _seen_by_day(engagement: pd.DataFrame, days: list[str], window: int) -> pd.DataFrame:
    frames = [_seen_in_window(engagement, day, window).assign(date=day) for day in days]
    return pd.concat(frames, ignore_index=True)
