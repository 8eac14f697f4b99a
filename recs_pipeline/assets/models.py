"""Modelling: trailing-window interactions -> ALS model, popular and similar articles."""

import dataclasses
import json
from functools import partial

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.model_store import MODEL_FILE, MODEL_INFO, load_als
from recs_pipeline.assets.common import (
    DistinctCount,
    concat_days,
    day_metadata,
    key,
    markdown_table,
    numeric,
    run_days,
    site_asset,
    trailing_window,
)
from recs_pipeline.core import asset_names as names
from recs_pipeline.core import schemas
from recs_pipeline.core.als import AlsParams, save_model, train_als
from recs_pipeline.core.day_frames import DayFrames, TrailingWindow
from recs_pipeline.core.engagement import window_interactions
from recs_pipeline.core.matrix import build_matrix
from recs_pipeline.core.popularity import popular_articles as rank_popular
from recs_pipeline.core.similarity import similar_articles as rank_similar
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.resources import Clock, LakeResource


def als_params(site: SiteConfig) -> AlsParams:
    als = site.models.als
    return AlsParams(
        factors=als.factors,
        regularization=als.regularization,
        iterations=als.iterations,
        alpha=als.alpha,
        bm25=als.bm25,
        seed=als.seed,
    )


def build_model_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:
    window = site.engagement.window_days
    has_dwell = site.events.has_heartbeats

    @site_asset(
        site,
        names.INTERACTIONS,
        ins={
            names.ENGAGEMENT: dg.AssetIn(
                key(site, names.ENGAGEMENT), partition_mapping=trailing_window(window)
            )
        },
    )
    def interactions(
        context: dg.AssetExecutionContext, engagement: DayFrames, clock: Clock
    ) -> DayFrames:
        """User x article reads over the trailing window (default 28 days) as of each day.

        The site's thresholds decide what a real read is; ``weight`` is the models' confidence
        (dwell seconds, or views for click-only sources). Days are computed one at a time as
        the lake IO manager writes them, each engagement partition read once and kept only
        while a window still covers it.
        """
        moments = clock.moments(context, site)
        windows = TrailingWindow(engagement, window)
        users, articles = DistinctCount(), DistinctCount()
        counts: dict[str, int] = {}
        rows = 0

        def day_interactions(day: str) -> pd.DataFrame:
            nonlocal counts, rows
            as_of = moments[day]
            frame, counts = window_interactions(
                windows.rows(day), day, as_of, site.engagement, has_dwell
            )
            users.add(frame["user_id"])
            articles.add(frame["article_id"])
            rows += len(frame)
            day_users, day_articles = frame["user_id"].nunique(), frame["article_id"].nunique()
            day_metadata(
                context,
                day,
                {
                    "dagster/row_count": len(frame),
                    "users": day_users,
                    "articles": day_articles,
                    "density": len(frame) / (day_users * day_articles)
                    if day_users and day_articles
                    else 0.0,
                    **counts,
                },
            )
            return frame

        def summary() -> dict[str, object]:
            return {
                "dagster/row_count": dg.MetadataValue.int(rows),
                "users": dg.MetadataValue.int(len(users)),
                "articles": dg.MetadataValue.int(len(articles)),
                "density": dg.MetadataValue.float(
                    rows / (len(users) * len(articles)) if len(users) and len(articles) else 0.0
                ),
                **numeric(counts),
            }

        return DayFrames(
            {day: partial(day_interactions, day) for day in run_days(context)},
            columns=schemas.INTERACTION_COLUMNS,
            summary=summary,
        )

    @site_asset(
        site,
        names.ALS_MODEL,
        ins={names.INTERACTIONS: dg.AssetIn(key(site, names.INTERACTIONS))},
        kinds={"implicit", "numpy"},
        stored=False,
    )
    def als_model(
        context: dg.AssetExecutionContext, interactions: DayFrames, lake: LakeResource
    ) -> dg.MaterializeResult:
        """Implicit ALS user and article factors, trained on each day's interactions.

        Stored as an artifact (``model.npz`` + ``model.json``) in the day's lake folder. A day with
        too little data to factorise gets no model; its readers get popular articles instead.
        """
        params = als_params(site)
        store = lake.lake()
        trained = skipped = 0
        seconds = 0.0
        info: dict[str, object] = {}
        for day in run_days(context):
            rows = interactions.load(day)
            try:
                matrix = build_matrix(rows)
                model = train_als(matrix, params)
            except ValueError as error:
                context.log.warning(f"{site.name} {day}: no ALS model ({error})")
                day_metadata(context, day, {"models_trained": 0, "days_without_model": 1})
                skipped += 1
                continue
            store.write_artifact(site.name, names.ALS_MODEL, day, MODEL_FILE, save_model(model))
            info = {
                "day": day,
                "users": len(model.user_ids),
                "articles": len(model.article_ids),
                names.INTERACTIONS: int(matrix.matrix.nnz),
                "training_seconds": round(model.training_seconds, 3),
                "params": dataclasses.asdict(params),
                "window_days": window,
            }
            store.write_artifact(
                site.name, names.ALS_MODEL, day, MODEL_INFO, json.dumps(info, indent=2).encode()
            )
            day_metadata(
                context,
                day,
                {
                    "models_trained": 1,
                    "users": len(model.user_ids),
                    "articles": len(model.article_ids),
                    names.INTERACTIONS: int(matrix.matrix.nnz),
                    "training_seconds": float(model.training_seconds),
                },
            )
            trained += 1
            seconds += model.training_seconds
        return dg.MaterializeResult(
            metadata={
                "models_trained": dg.MetadataValue.int(trained),
                "days_without_model": dg.MetadataValue.int(skipped),
                "training_seconds": dg.MetadataValue.float(seconds),
                "users": dg.MetadataValue.int(int(info.get("users", 0))),  # type: ignore[call-overload]
                "articles": dg.MetadataValue.int(int(info.get("articles", 0))),  # type: ignore[call-overload]
                "factors": dg.MetadataValue.int(params.factors),
            }
        )

    @site_asset(
        site,
        names.POPULAR_ARTICLES,
        ins={
            names.ENGAGEMENT: dg.AssetIn(
                key(site, names.ENGAGEMENT),
                partition_mapping=trailing_window(site.models.popular.window_days),
            )
        },
    )
    def popular_articles(
        context: dg.AssetExecutionContext, engagement: DayFrames, clock: Clock
    ) -> pd.DataFrame:
        """Time-decayed popularity: the cold-start and default list (best article scores 1)."""
        config = site.models.popular
        moments = clock.moments(context, site)
        windows = TrailingWindow(engagement, config.window_days)
        frames = []
        for day in run_days(context):
            as_of = moments[day]
            rows = windows.rows(day)
            if rows.empty:
                continue
            rows = rows.assign(weight=rows["dwell_seconds"] if has_dwell else rows["views"])
            ranked = rank_popular(
                rows,
                as_of=as_of,
                half_life=pd.Timedelta(hours=config.half_life_hours),
                top_n=config.top_n,
            )
            frames.append(ranked.assign(date=day))
            day_metadata(context, day, {"dagster/row_count": len(ranked)})
        frame = concat_days(frames, schemas.POPULAR_COLUMNS)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "top_articles": markdown_table(frame[["date", "rank", "article_id", "score"]]),
            }
        )
        return frame

    @site_asset(
        site,
        names.SIMILAR_ARTICLES,
        ins={names.INTERACTIONS: dg.AssetIn(key(site, names.INTERACTIONS))},
        deps=[key(site, names.ALS_MODEL)],
    )
    def similar_articles(
        context: dg.AssetExecutionContext,
        interactions: DayFrames,
        clock: Clock,
        lake: LakeResource,
    ) -> pd.DataFrame:
        """Article -> article top-K: cosine of ALS article factors x recency, self excluded."""
        config = site.models.similar
        moments = clock.moments(context, site)
        store = lake.lake()
        frames = []
        for day in run_days(context):
            model = load_als(store, site, day)
            if model is None:
                continue
            rows = interactions.load(day)
            first_seen = rows.groupby("article_id")["article_first_seen"].min()
            as_of = moments[day]
            among = None
            if config.recent_days is not None:
                since = as_of - pd.Timedelta(days=config.recent_days)
                among = pd.Index(rows.loc[rows["last_ts"] >= since, "article_id"].unique())
            ranked = rank_similar(
                model,
                first_seen,
                as_of=as_of,
                half_life=pd.Timedelta(days=config.half_life_days),
                top_k=config.top_k,
                among=among,
            )
            frames.append(ranked.assign(date=day))
            day_metadata(
                context,
                day,
                {"dagster/row_count": len(ranked), "articles": ranked["article_id"].nunique()},
            )
        frame = concat_days(frames, schemas.SIMILAR_COLUMNS)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "articles": dg.MetadataValue.int(int(frame["article_id"].nunique())),
                "sample": markdown_table(frame),
            }
        )
        return frame

    return [interactions, als_model, popular_articles, similar_articles]
