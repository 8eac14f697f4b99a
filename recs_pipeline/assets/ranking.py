"""Ranking: the LightGBM ranker trained as of each day, and the evaluation against the baselines."""

import dataclasses
import datetime as dt
import functools
import json
from typing import Any, Final
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.assets.common import (
    concat_days,
    day_metadata,
    key,
    markdown_table,
    numeric,
    of_days,
    previous_day_dep,
    run_days,
    site_asset,
    trailing_window,
)
from recs_pipeline.assets.models import load_als
from recs_pipeline.core.als import AlsModel, load_model
from recs_pipeline.core.baselines import BaselineParams
from recs_pipeline.core.candidates import CandidateParams, ClickHistory, similar_matrix
from recs_pipeline.core.day_frames import DayFrames, TrailingWindow, stack
from recs_pipeline.core.engagement import daily_engagement
from recs_pipeline.core.evaluation import (
    METRICS,
    RESULT_COLUMNS,
    best_baseline,
    evaluate_day,
    summarise,
)
from recs_pipeline.core.popularity import popular_articles as rank_popular
from recs_pipeline.core.ranker import (
    RankerModel,
    RankerParams,
    RankingContext,
    evaluation_methods,
    load_ranker,
    save_ranker,
    train_ranker,
)
from recs_pipeline.core.serving import ServedLists, ServingInputs, ServingPolicy, choose_policy
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import day_bounds, day_of, window_days
from recs_pipeline.resources import Clock, LakeResource, run_started

RANKER_FILE = "ranker.txt"
RANKER_INFO = "ranker.json"

EVALUATION_COLUMNS = ("date", *RESULT_COLUMNS)


def ranker_params(site: SiteConfig) -> RankerParams:
    config = site.models.ranker
    return RankerParams(
        label_hours=config.label_hours,
        anchor_step_hours=config.anchor_step_hours,
        training_slots=config.training_slots,
        validation_slots=config.validation_slots,
        max_users_per_slot=config.max_users_per_slot,
        n_estimators=config.n_estimators,
        learning_rate=config.learning_rate,
        num_leaves=config.num_leaves,
        min_child_samples=config.min_child_samples,
        candidates=CandidateParams(
            lookback_hours=config.history_days * 24.0,
            pop_now_n=config.pop_now_n,
            pop_hour_n=config.pop_hour_n,
            pop_day_n=config.pop_day_n,
            fresh_n=config.fresh_n,
            covisit_n=config.covisit_n,
            next_n=config.next_n,
            similar_n=config.similar_n,
            als_n=config.als_n,
        ),
    )


def baseline_params(site: SiteConfig) -> BaselineParams:
    config = site.models.evaluation
    fresh = site.models.popular.fresh_half_life_hours
    return BaselineParams(
        pop_decay_half_life_hours=config.pop_decay_half_life_hours,
        # The chain's fresh popularity is always among them: the policy compares with it.
        pop_decay_half_lives_hours=tuple(sorted({*config.pop_decay_half_lives_hours, fresh})),
        lookback_hours=config.lookback_days * 24.0,
    )


def previous_day(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


CLICK_COLUMNS = ("user_id", "article_id", "ts")


def page_views(events: pd.DataFrame) -> pd.DataFrame:
    """The clicks the ranker and the evaluation read: article page views (user, article, time)."""
    if events.empty or "ts" not in events.columns:
        return pd.DataFrame(
            {"user_id": [], "article_id": [], "ts": pd.Series(dtype="datetime64[ms, UTC]")}
        )
    views = events.loc[events["event_name"] == "page_view"] if "event_name" in events else events
    views = views.loc[views["article_id"].notna(), ["user_id", "article_id", "ts"]]
    return views.astype({"user_id": str, "article_id": str})


def ranker_info(lake: Lake, site: SiteConfig, day: str) -> dict[str, Any] | None:
    """The ranker's JSON of a day (trained or not, and why); None when never materialised."""
    data = lake.read_artifact(site.name, "ranker_model", day, RANKER_INFO)
    return json.loads(data) if data is not None else None


def load_day_ranker(lake: Lake, site: SiteConfig, day: str) -> RankerModel | None:
    """The ranker trained as of ``day``; None when the day has none (too little data)."""
    info = lake.read_artifact(site.name, "ranker_model", day, RANKER_INFO)
    text = lake.read_artifact(site.name, "ranker_model", day, RANKER_FILE)
    if info is None or text is None or not json.loads(info).get("trained", False):
        return None
    return load_ranker(text, info)


def serving_policy(
    lake: Lake, site: SiteConfig, day: str, evaluation: pd.DataFrame | None = None
) -> ServingPolicy:
    """What the lists of ``day`` are served from: the evaluation of the day before decides
    (``evaluation`` when the caller holds it, else its partition); without one every group is
    ranked and fresh popularity has the site's ``models.popular.fresh_half_life_hours``."""
    default = site.models.popular.fresh_half_life_hours
    if evaluation is None:
        evaluation = lake.read_partition(site.name, "recommendation_evaluation", previous_day(day))
    if evaluation is None or evaluation.empty:
        return ServingPolicy(fresh_half_life_hours=default)
    return choose_policy(
        summarise(evaluation),
        default,
        min_readers=site.models.gate.min_group_readers,
        pop_decay_hours=site.models.evaluation.pop_decay_half_life_hours,
    )


def read_similar(lake: Lake, site: SiteConfig, day: str) -> pd.DataFrame | None:
    return lake.read_partition(site.name, "similar_articles", day)


SECTION_COLUMNS: Final = ("article_id", "section")


def article_sections(lake: Lake, site: SiteConfig, days: list[str]) -> pd.Series | None:
    """Article -> section from the ``pages`` of some days (None when pages have no sections)."""
    frames = [_day_sections(lake, site.name, day) for day in sorted(days)]
    return _sections(stack(frames, SECTION_COLUMNS))


class SectionWindow:
    """Article -> section over the ``days`` pages partitions ending with a day.

    Asked for consecutive days (a range run), each pages partition is read once and kept only
    while a later window still covers it, where ``article_sections`` per day would re-read the
    whole window every day.
    """

    def __init__(self, lake: Lake, site: SiteConfig, days: int) -> None:
        pages = DayFrames(
            {
                day: functools.partial(_day_sections, lake, site.name, day)
                for day in lake.days(site.name, "pages")
            },
            columns=SECTION_COLUMNS,
        )
        self._window = TrailingWindow(pages, days)

    def sections(self, day: str) -> pd.Series | None:
        return _sections(self._window.rows(day))


def _day_sections(lake: Lake, site: str, day: str) -> pd.DataFrame:
    """A day's pages reduced to the articles that have a section."""
    pages = lake.read_partition(site, "pages", day)
    if pages is None or "section" not in pages.columns:
        return pd.DataFrame(columns=list(SECTION_COLUMNS))
    return pages.loc[pages["section"].notna(), list(SECTION_COLUMNS)]


def _sections(known: pd.DataFrame) -> pd.Series | None:
    if known.empty:
        return None
    return known.drop_duplicates("article_id", keep="last").set_index("article_id")["section"]


def ranking_context(
    clicks: pd.DataFrame,
    tz: ZoneInfo,
    als: AlsModel | None,
    similar: pd.DataFrame | None,
    categories: pd.Series | None = None,
) -> RankingContext:
    history = ClickHistory.from_events(clicks)
    return RankingContext(
        history=history,
        tz=tz,
        als=als,
        similar=similar_matrix(history, similar) if similar is not None else None,
        categories=categories,
    )


def click_window(raw_events: DayFrames, days: int) -> TrailingWindow:
    """Page views of the ``days`` days ending with a day, read one partition at a time.

    Each day's raw events (page pings included) are reduced to its page views as they are read,
    and a day's views are kept only while a later window still covers it: a range run holds one
    window of clicks, not every raw event of the range.
    """
    return TrailingWindow(raw_events.map(page_views, CLICK_COLUMNS), days)


OPENED_COLUMNS = ("user_id", "article_id", "date")


def opened_window(engagement: DayFrames, days: int) -> TrailingWindow:
    """(reader, article, day) of the pairs opened in the ``days`` days ending with a day, one
    partition read at a time and reduced to its distinct pairs as it is read (the day is a
    categorical: one value per partition)."""
    return TrailingWindow(engagement.map(_distinct_pairs, OPENED_COLUMNS), days)


def _distinct_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=list(OPENED_COLUMNS))
    pairs = rows[["user_id", "article_id", "date"]].drop_duplicates(["user_id", "article_id"])
    return pairs.astype({"date": "category"}).reset_index(drop=True)


def readers_since(pairs: pd.DataFrame, first_day: str) -> pd.Index:
    """Readers with a pair opened on ``first_day`` or later (the engagement window's readers,
    who get a published list; the read set reaches further back)."""
    if pairs.empty:
        return pd.Index([], dtype=object)
    recent = pairs.loc[pairs["date"].astype(str) >= first_day, "user_id"]
    return pd.Index(pd.unique(recent.astype(str).to_numpy()), dtype=object)


def day_ranking_context(
    clicks: TrailingWindow,
    sections: SectionWindow,
    lake: LakeResource,
    site: SiteConfig,
    day: str,
    as_of: pd.Timestamp,
    models_lag: int = 1,
) -> RankingContext:
    """Clicks of the last ``days`` days before ``as_of``, with the ALS model and similar
    articles of ``models_lag`` days before (the previous day's never saw this day's clicks; a
    ranker trained on older anchors needs models older than its oldest anchor) and sections."""
    store = lake.lake()
    window = clicks.rows(day)
    before = window_days(day, models_lag + 1)[0]
    return ranking_context(
        window.loc[window["ts"] < as_of],
        site.tz,
        load_als(lake, site, before),
        read_similar(store, site, before),
        sections.sections(day),
    )


def evaluation_numbers(summary: pd.DataFrame) -> dict[str, float]:
    """``<protocol>_<group>_<method>_<metric>`` and, per protocol and group, the best baseline's
    NDCG and the served lists' lift over it: the numbers the UI plots over days."""
    values: dict[str, float] = {}
    if summary.empty:
        return values
    for row in summary.itertuples(index=False):
        for metric in ("users", "ndcg", "hit_rate"):
            values[f"{row.protocol}_{row.group}_{row.method}_{metric}"] = float(
                getattr(row, metric)
            )
    for (protocol, group), rows in summary.groupby(["protocol", "group"]):
        best = best_baseline(rows, str(protocol), str(group))
        served = rows.loc[rows["method"] == "served"]
        if best is None or served.empty:
            continue
        values[f"{protocol}_{group}_best_baseline_ndcg"] = float(best["ndcg"])
        values[f"{protocol}_{group}_served_lift"] = float(served["ndcg"].iloc[0]) / max(
            float(best["ndcg"]), 1e-12
        )
    return values


def gate_summary(validation: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat numbers of a validation: ``<method>_<metric>`` for the UI's plots."""
    out: dict[str, float] = {}
    for method, metrics in sorted(validation.items()):
        for metric in ("users", *METRICS):
            if metric in metrics:
                out[f"validation_{method}_{metric}"] = float(metrics[metric])
    return out


def build_ranking_assets(site: SiteConfig) -> list[dg.AssetsDefinition]:
    config = site.models.ranker
    evaluation = site.models.evaluation

    @site_asset(
        site,
        "ranker_model",
        ins={
            "raw_events": dg.AssetIn(
                key(site, "raw_events"), partition_mapping=trailing_window(config.training_days)
            )
        },
        deps=[
            previous_day_dep(site, "als_model", config.anchor_span_days),
            previous_day_dep(site, "similar_articles", config.anchor_span_days),
            key(site, "pages"),
        ],
        kinds={"lightgbm"},
        stored=False,
    )
    def ranker_model(
        context: dg.AssetExecutionContext,
        raw_events: DayFrames,
        clock: Clock,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        """LightGBM LambdaRank over the candidates, trained on 2-hour time splits before as-of.

        Candidates and features at each anchor come from the clicks before it; labels are the
        next 2 hours' clicks. The last anchors are held out and scored against the baselines (the
        publishing gate's evidence). ALS and similar articles come from the previous day, so the
        training features never saw the label clicks. Stored as ``ranker.txt`` (LightGBM text)
        and ``ranker.json`` (parameters, data window, training size, feature importance,
        validation metrics).
        """
        store = lake.lake()
        params = ranker_params(site)
        started = run_started(context)
        clicks = click_window(raw_events, config.training_days)
        sections = SectionWindow(store, site, config.training_days)
        last: dict[str, Any] = {}
        trained = 0
        for day in run_days(context):
            as_of = clock.as_of_for(day, site.tz, started)
            info: dict[str, Any] = {"trained": False, "as_of": as_of.isoformat(), "day": day}
            if not config.enabled:
                info["reason"] = "ranker disabled in the site's models.ranker.enabled"
            else:
                ctx = day_ranking_context(
                    clicks, sections, lake, site, day, as_of, models_lag=config.anchor_span_days
                )
                try:
                    model = train_ranker(ctx, as_of, params, baseline_params(site))
                except ValueError as error:
                    info["reason"] = str(error)
                    context.log.warning(f"{site.name} {day}: no ranker ({error})")
                else:
                    text, info_json = save_ranker(model)
                    store.write_artifact(site.name, "ranker_model", day, RANKER_FILE, text)
                    info = {**json.loads(info_json), "trained": True, "day": day}
                    trained += 1
                    context.log.info(
                        f"{site.name} {day}: ranker trained as of {as_of.isoformat()} on "
                        f"{info['training_rows']:,} rows in "
                        f"{info['build_seconds'] + info['fit_seconds']:.0f}s"
                    )
            store.write_artifact(
                site.name,
                "ranker_model",
                day,
                RANKER_INFO,
                json.dumps(info, indent=2, default=str).encode(),
            )
            day_metadata(
                context,
                day,
                {
                    "models_trained": int(bool(info.get("trained"))),
                    **{
                        name: info[name]
                        for name in (
                            "training_rows",
                            "training_groups",
                            "training_positives",
                            "build_seconds",
                            "fit_seconds",
                        )
                        if name in info
                    },
                    **gate_summary(info.get("validation", {})),
                },
            )
            last = info
        importance = pd.DataFrame(
            list(last.get("feature_importance", {}).items()), columns=["feature", "gain"]
        )
        validation = last.get("validation", {})
        table = pd.DataFrame(
            [{"method": name, **metrics} for name, metrics in sorted(validation.items())]
        )
        return dg.MaterializeResult(
            metadata={
                "models_trained": dg.MetadataValue.int(trained),
                **numeric(
                    {
                        key_: last[key_]
                        for key_ in (
                            "training_rows",
                            "training_groups",
                            "training_positives",
                            "build_seconds",
                            "fit_seconds",
                        )
                        if key_ in last
                    }
                ),
                **numeric(gate_summary(validation)),
                "reason": dg.MetadataValue.text(str(last.get("reason", "trained"))),
                "feature_importance": markdown_table(importance, rows=40),
                "validation": markdown_table(table, rows=10),
                "params": dg.MetadataValue.json(params.to_dict()),
                "data_window": dg.MetadataValue.json(last.get("data_window", {})),
            }
        )

    @site_asset(
        site,
        "recommendation_evaluation",
        ins={
            "raw_events": dg.AssetIn(
                key(site, "raw_events"),
                partition_mapping=trailing_window(evaluation.lookback_days + 1),
            ),
            "engagement": dg.AssetIn(
                key(site, "engagement"),
                partition_mapping=trailing_window(site.engagement.read_days),
            ),
        },
        deps=[
            previous_day_dep(site, "ranker_model"),
            previous_day_dep(site, "als_model"),
            previous_day_dep(site, "similar_articles"),
            previous_day_dep(site, "popular_articles"),
            key(site, "pages"),
        ],
        kinds={"lightgbm", "pandas"},
    )
    def recommendation_evaluation(
        context: dg.AssetExecutionContext,
        raw_events: DayFrames,
        engagement: DayFrames,
        clock: Clock,
        lake: LakeResource,
    ) -> pd.DataFrame:
        """Both protocols of evaluation.md on each day: what readers are served, and baselines.

        ``served`` is the served chain itself (``core/serving.recommendations_as_of``, the
        function behind ``user_recommendations``), built at every boundary from what the asset
        would read then, with the models as of the day's start (the ranker, ALS, similar and
        popular articles of the previous day), for every test reader: readers known only from
        reads older than the click lookback included. Next to it, the baselines of the same
        run: ``pop24h``, ``pop_decay`` at every tuned half-life (``pop_decay_<half-life>``),
        ``covisit`` and ``als``. Rows per reader group (``all``, ``active``, ``older``,
        ``no_history``). Next-day scores need the whole day; 2-hour slots are scored once they
        have ended. The gate (``served_beats_best_baseline``) reads this table.
        """
        store = lake.lake()
        started = run_started(context)
        clicks = click_window(raw_events, evaluation.lookback_days + 1)
        older_days = site.engagement.read_days - (evaluation.lookback_days + 1)
        older = opened_window(engagement, older_days) if older_days > 0 else None
        sections = SectionWindow(store, site, evaluation.lookback_days + 1)
        frames = []
        evaluated: dict[str, pd.DataFrame] = {}
        for day in run_days(context):
            as_of = clock.as_of_for(day, site.tz, started)
            before = previous_day(day)
            policy = serving_policy(store, site, day, evaluated.get(before))
            ctx = day_ranking_context(clicks, sections, lake, site, day, as_of)
            window = clicks.rows(day)
            earlier = (
                older.rows(window_days(day, evaluation.lookback_days + 2)[0])
                if older is not None
                else pd.DataFrame(columns=list(OPENED_COLUMNS))
            )
            popular = store.read_partition(site.name, "popular_articles", before)
            if popular is None:
                popular = pd.DataFrame(columns=["rank", "article_id", "score"])
            base = ServingInputs(
                moment=as_of,
                tz=site.tz,
                clicks=window.iloc[:0],
                seen=earlier,
                popular=popular,
                als=ctx.als,
                similar=read_similar(store, site, before),
                ranker=load_day_ranker(store, site, before) if config.enabled else None,
                categories=ctx.categories,
                fresh_half_life_hours=policy.fresh_half_life_hours,
                policy=policy.sources,
            )

            before_as_of = window.loc[window["ts"] < as_of]

            def chain(
                inputs: ServingInputs,
                history: ClickHistory = ctx.history,
                clicks: pd.DataFrame = before_as_of,
            ) -> ServedLists:
                return ServedLists(
                    history,
                    clicks,
                    inputs,
                    n=evaluation.k,
                    active_hours=config.active_hours,
                    clicks_days=config.history_days + 1,
                )

            served = chain(base)
            methods: dict[str, Any] = {"served": served}
            # The ranker's chain for every group: the evidence the next day's policy reads.
            if policy.sources and base.ranker is not None:
                methods["ranker"] = chain(dataclasses.replace(base, policy=None))
            methods.update(evaluation_methods(ctx, None, baseline_params(site), k=evaluation.k))
            result = evaluate_day(
                ctx.history,
                day,
                site.tz,
                methods,
                k=evaluation.k,
                until=as_of,
                groups=served.groups,
                earlier=earlier,
            )
            if not policy.sources and base.ranker is not None:
                result = pd.concat(
                    [result, result.loc[result["method"] == "served"].assign(method="ranker")],
                    ignore_index=True,
                )
            result = result.assign(date=day)
            evaluated[day] = result
            frames.append(result)
            day_metadata(
                context,
                day,
                {
                    "dagster/row_count": len(result),
                    **evaluation_numbers(summarise(result) if len(result) else pd.DataFrame()),
                },
            )
            context.log.info(
                f"{site.name} {day}: evaluated {served.readers:,} reader lists over "
                f"{served.slots} slots in {served.seconds:.0f}s; sources by group: "
                f"{policy.sources or 'the ranker for every group'}, fresh popularity's "
                f"half-life {policy.fresh_half_life_hours:g} h"
            )
        frame = concat_days(frames, EVALUATION_COLUMNS)
        if not frame.empty:
            frame = frame.assign(slot=frame["slot"].astype(str))
        summary = summarise(frame) if not frame.empty else pd.DataFrame()
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                **numeric(evaluation_numbers(summary)),
                "table": markdown_table(
                    summary.round(4) if not summary.empty else summary, rows=60
                ),
            }
        )
        return frame

    return [ranker_model, recommendation_evaluation]


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
    if not lake.has_partition(site.name, "raw_events", day):
        raise MissingPartition(
            f"{site.name}/raw_events/date={day} is not in the lake: materialise it first, e.g. "
            f"dagster asset materialize -m recs_pipeline.definitions "
            f"--select '{site.name}/raw_events' --partition {day}"
        )
    # Raw events only for the ranker's click history (which ends with the moment's day); the
    # read set's earlier days come from the engagement partitions.
    raw = lake.read_partitions(
        site.name, "raw_events", window_days(day, ranker_config.history_days + 1)
    )
    raw = raw.loc[raw["ts"] < moment] if raw is not None else pd.DataFrame()
    earlier = [d for d in window_days(day, site.engagement.read_days) if d != day]
    engagement = lake.read_partitions(site.name, "engagement", earlier)
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
    ranker = None
    if ranker_config.enabled:
        ranker = load_day_ranker(lake, site, day)
        info = ranker.info if ranker is not None else None
        if info is None or pd.Timestamp(info["as_of"]) > moment:
            ranker = load_day_ranker(lake, site, model_day) if model_day != day else None
    als_data = lake.read_artifact(site.name, "als_model", model_day, "model.npz")
    policy = serving_policy(lake, site, day)
    return ServingInputs(
        moment=moment,
        tz=site.tz,
        clicks=page_views(of_days(raw, window_days(day, ranker_config.history_days + 1))),
        seen=seen,
        popular=popular,
        als=load_model(als_data) if als_data is not None else None,
        similar=read_similar(lake, site, model_day),
        ranker=ranker,
        categories=article_sections(lake, site, window_days(day, ranker_config.history_days + 1)),
        fresh_half_life_hours=policy.fresh_half_life_hours,
        policy=policy.sources,
        readers=readers,
    )
