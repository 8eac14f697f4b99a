"""The one builder of the served chain's inputs: the asset, ``recs recommend`` and the evaluation.

``serving_inputs`` assembles a :class:`~recs_pipeline.core.serving.ServingInputs` from what the
caller has read (clicks, the read set, the popular list, sections) and what the lake holds for
the day (the ranker, ALS, similar articles, and the previous day's evaluation, which decides
each reader group's source and the fresh popularity's half-life). ``serving_inputs_from_lake``
reads the rest from the lake too, as of any moment.
"""

from __future__ import annotations

import pandas as pd

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.adapters.lake_windows import article_sections, page_views, readers_since
from recs_pipeline.adapters.model_store import (
    load_als,
    load_day_ranker,
    ranker_info,
    read_similar,
)
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.day_frames import of_days
from recs_pipeline.core.engagement import daily_engagement
from recs_pipeline.core.evaluation import summarise
from recs_pipeline.core.popularity import popular_articles as rank_popular
from recs_pipeline.core.serving import ServingInputs, ServingPolicy, choose_policy
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import day_bounds, day_of, previous_day, window_days

__all__ = ["MissingPartition", "serving_inputs", "serving_inputs_from_lake", "serving_policy"]


def serving_policy(
    lake: Lake, site: SiteConfig, day: str, evaluation: pd.DataFrame | None = None
) -> ServingPolicy:
    """What the lists of ``day`` are served from: the evaluation of the day before decides
    (``evaluation`` when the caller holds it, else its partition); without one every group is
    ranked and fresh popularity has the site's ``models.popular.fresh_half_life_hours``."""
    default = site.models.popular.fresh_half_life_hours
    if evaluation is None:
        evaluation = lake.read_partition(
            site.name, names.RECOMMENDATION_EVALUATION, previous_day(day)
        )
    if evaluation is None or evaluation.empty:
        return ServingPolicy(fresh_half_life_hours=default)
    return choose_policy(
        summarise(evaluation),
        default,
        min_readers=site.models.gate.min_group_readers,
        pop_decay_hours=site.models.evaluation.pop_decay_half_life_hours,
    )


def serving_inputs(
    lake: Lake,
    site: SiteConfig,
    day: str,
    moment: pd.Timestamp,
    *,
    clicks: pd.DataFrame,
    seen: pd.DataFrame,
    popular: pd.DataFrame,
    categories: pd.Series | None,
    ranker_day: str | None,
    readers: pd.Index | None = None,
    models_day: str | None = None,
    evaluation: pd.DataFrame | None = None,
) -> ServingInputs:
    """The inputs of the lists of ``day`` as of ``moment``.

    ALS and similar articles are those of ``models_day`` (default ``day``), the ranker that of
    ``ranker_day`` (None, or ``models.ranker.enabled`` off: no ranker); the policy comes from
    the evaluation of the day before ``day`` (``evaluation`` when the caller holds it).
    """
    models_day = models_day or day
    ranker = (
        load_day_ranker(lake, site, ranker_day)
        if site.models.ranker.enabled and ranker_day is not None
        else None
    )
    policy = serving_policy(lake, site, day, evaluation)
    return ServingInputs(
        moment=moment,
        tz=site.tz,
        clicks=clicks,
        seen=seen,
        popular=popular,
        als=load_als(lake, site, models_day),
        similar=read_similar(lake, site, models_day),
        ranker=ranker,
        categories=categories,
        fresh_half_life_hours=policy.fresh_half_life_hours,
        policy=policy.sources,
        readers=readers,
    )


def _artifact_day(lake: Lake, site: SiteConfig, moment: pd.Timestamp) -> tuple[str, str]:
    """(day containing the moment, newest day whose end-of-day models are not after it)."""
    day = day_of(moment - pd.Timedelta(milliseconds=1), site.tz).isoformat()
    _, end = day_bounds(day, site.tz)
    return day, day if moment >= end else previous_day(day)


class MissingPartition(LookupError):
    """A partition that a list as of some moment needs and the lake does not hold."""


def serving_inputs_from_lake(lake: Lake, site: SiteConfig, moment: pd.Timestamp) -> ServingInputs:
    """What ``user_recommendations`` reads, rebuilt from the lake as of any moment.

    The moment's own day is re-derived from its raw events cut at the moment (the asset's
    engagement code path); models (ALS, similar articles, ranker) are the newest ones trained as
    of a moment not after it, so nothing later leaks in. Needs the ``raw_events`` partition of
    the moment's day (``MissingPartition`` names it otherwise); the ranker, ALS and similar
    articles of that day or the day before are used when materialised (without a ranker the
    lists are fresh popularity); the read set is every ``engagement`` partition of the read
    horizon that exists; the sources by group come from the previous day's evaluation.
    """
    day, model_day = _artifact_day(lake, site, moment)
    ranker_config = site.models.ranker
    if not lake.has_partition(site.name, names.RAW_EVENTS, day):
        raise MissingPartition(
            f"{site.name}/raw_events/date={day} is not in the lake: materialise it first, e.g. "
            f"dagster asset materialize -m recs_pipeline.definitions "
            f"--select '{site.name}/raw_events' --partition {day}"
        )
    # Raw events only for the ranker's click history (which ends with the moment's day); the
    # read set's earlier days come from the engagement partitions.
    raw = lake.read_partitions(
        site.name, names.RAW_EVENTS, window_days(day, ranker_config.history_days + 1)
    )
    raw = raw.loc[raw["ts"] < moment] if raw is not None else pd.DataFrame()
    earlier = [d for d in window_days(day, site.engagement.read_days) if d != day]
    engagement = lake.read_partitions(site.name, names.ENGAGEMENT, earlier)
    today = daily_engagement(of_days(raw, [day]), day, moment, site.events.heartbeat_seconds)
    frames = [frame for frame in (engagement, today) if frame is not None and not frame.empty]
    engaged = pd.concat(frames, ignore_index=True) if frames else today
    seen = engaged[["user_id", "article_id"]].drop_duplicates()
    window_start = window_days(day, site.engagement.window_days)[0]
    readers = readers_since(engaged[["user_id", "article_id", "date"]], window_start)
    popular_config = site.models.popular
    recent = of_days(engaged, window_days(day, popular_config.window_days))
    has_dwell = site.events.has_heartbeats
    popular = (
        rank_popular(
            recent.assign(weight=recent["dwell_seconds"] if has_dwell else recent["views"]),
            as_of=moment,
            half_life=pd.Timedelta(hours=popular_config.half_life_hours),
            top_n=popular_config.top_n,
        )
        if len(recent)
        else pd.DataFrame(columns=["rank", "article_id", "score"])
    )
    info = ranker_info(lake, site, day)
    trained_today = bool(info and info.get("trained") and pd.Timestamp(info["as_of"]) <= moment)
    return serving_inputs(
        lake,
        site,
        day,
        moment,
        clicks=page_views(of_days(raw, window_days(day, ranker_config.history_days + 1))),
        seen=seen,
        popular=popular,
        categories=article_sections(lake, site, window_days(day, ranker_config.history_days + 1)),
        readers=readers,
        models_day=model_day,
        ranker_day=day if trained_today else model_day if model_day != day else None,
    )
