"""Ranking: the LightGBM ranker trained as of each day, and the evaluation against the baselines."""

import dataclasses
import json
import os
from typing import Any

import dagster as dg
import pandas as pd

from recs_pipeline.adapters.lake_windows import (
    OPENED_COLUMNS,
    SectionWindow,
    click_window,
    opened_window,
)
from recs_pipeline.adapters.model_store import (
    RANKER_FILE,
    RANKER_INFO,
    load_als,
    read_popular,
    read_similar,
)
from recs_pipeline.adapters.serving_inputs import serving_inputs
from recs_pipeline.assets.common import (
    concat_days,
    day_metadata,
    key,
    markdown_table,
    numeric,
    previous_day_dep,
    run_days,
    site_asset,
    trailing_window,
)
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.baselines import BaselineParams
from recs_pipeline.core.candidates import CandidateParams, ClickHistory
from recs_pipeline.core.day_frames import DayFrames, TrailingWindow
from recs_pipeline.core.evaluation import (
    METRICS,
    RESULT_COLUMNS,
    best_baseline,
    evaluate_day,
    summarise,
)
from recs_pipeline.core.progress import Progress
from recs_pipeline.core.ranker import (
    RankerParams,
    RankingContext,
    evaluation_methods,
    ranking_context,
    save_ranker,
    train_ranker,
)
from recs_pipeline.core.serving import ServedLists, ServingInputs
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.timeframe import previous_day, window_days
from recs_pipeline.resources import Clock, LakeResource

EVALUATION_COLUMNS = ("date", *RESULT_COLUMNS)


def progress_seconds() -> float:
    """Seconds between progress lines of the long steps (``RECS_PROGRESS_SECONDS``, 10)."""
    return float(os.environ.get("RECS_PROGRESS_SECONDS", "10"))


def progress(context: dg.AssetExecutionContext, label: str) -> Progress:
    """Progress lines of a long step, in the run's log."""
    return Progress(context.log.info, label, every=progress_seconds())


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
        ClickHistory.from_events(window.loc[window["ts"] < as_of]),
        site.tz,
        load_als(store, site, before),
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
        names.RANKER_MODEL,
        ins={
            names.RAW_EVENTS: dg.AssetIn(
                key(site, names.RAW_EVENTS), partition_mapping=trailing_window(config.training_days)
            )
        },
        deps=[
            previous_day_dep(site, names.ALS_MODEL, config.anchor_span_days),
            previous_day_dep(site, names.SIMILAR_ARTICLES, config.anchor_span_days),
            key(site, names.PAGES),
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
        moments = clock.moments(context, site)
        clicks = click_window(raw_events, config.training_days)
        sections = SectionWindow(store, site, config.training_days)
        last: dict[str, Any] = {}
        trained = 0
        for day in run_days(context):
            as_of = moments[day]
            info: dict[str, Any] = {"trained": False, "as_of": as_of.isoformat(), "day": day}
            if not config.enabled:
                info["reason"] = "ranker disabled in the site's models.ranker.enabled"
            else:
                steps = progress(context, f"{site.name} {day} ranker")
                ctx = day_ranking_context(
                    clicks, sections, lake, site, day, as_of, models_lag=config.anchor_span_days
                )
                steps.say(
                    f"training as of {as_of.isoformat()} on {len(ctx.history):,} clicks; "
                    f"building {params.training_slots} training anchors"
                )
                try:
                    model = train_ranker(ctx, as_of, params, baseline_params(site), progress=steps)
                except ValueError as error:
                    info["reason"] = str(error)
                    context.log.warning(f"{site.name} {day}: no ranker ({error})")
                else:
                    text, info_json = save_ranker(model)
                    store.write_artifact(site.name, names.RANKER_MODEL, day, RANKER_FILE, text)
                    info = {**json.loads(info_json), "trained": True, "day": day}
                    trained += 1
                    context.log.info(
                        f"{site.name} {day}: ranker trained as of {as_of.isoformat()} on "
                        f"{info['training_rows']:,} rows in "
                        f"{info['build_seconds'] + info['fit_seconds']:.0f}s"
                    )
            store.write_artifact(
                site.name,
                names.RANKER_MODEL,
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
        names.RECOMMENDATION_EVALUATION,
        ins={
            names.RAW_EVENTS: dg.AssetIn(
                key(site, names.RAW_EVENTS),
                partition_mapping=trailing_window(evaluation.lookback_days + 1),
            ),
            names.ENGAGEMENT: dg.AssetIn(
                key(site, names.ENGAGEMENT),
                partition_mapping=trailing_window(site.engagement.read_days),
            ),
        },
        deps=[
            previous_day_dep(site, names.RANKER_MODEL),
            previous_day_dep(site, names.ALS_MODEL),
            previous_day_dep(site, names.SIMILAR_ARTICLES),
            previous_day_dep(site, names.POPULAR_ARTICLES),
            key(site, names.PAGES),
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
        moments = clock.moments(context, site)
        clicks = click_window(raw_events, evaluation.lookback_days + 1)
        older_days = site.engagement.read_days - (evaluation.lookback_days + 1)
        older = opened_window(engagement, older_days) if older_days > 0 else None
        sections = SectionWindow(store, site, evaluation.lookback_days + 1)
        frames = []
        evaluated: dict[str, pd.DataFrame] = {}
        for day in run_days(context):
            as_of = moments[day]
            before = previous_day(day)
            ctx = day_ranking_context(clicks, sections, lake, site, day, as_of)
            window = clicks.rows(day)
            earlier = (
                older.rows(window_days(day, evaluation.lookback_days + 2)[0])
                if older is not None
                else pd.DataFrame(columns=list(OPENED_COLUMNS))
            )
            # What user_recommendations would read at the day's start: the models, popular
            # list and policy as of then (the previous day's), the reads before the window.
            base = serving_inputs(
                store,
                site,
                day,
                as_of,
                clicks=window.iloc[:0],
                seen=earlier,
                popular=read_popular(store, site, before),
                categories=ctx.categories,
                models_day=before,
                ranker_day=before,
                evaluation=evaluated.get(before),
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
            if base.policy and base.ranker is not None:
                methods["ranker"] = chain(dataclasses.replace(base, policy=None))
            methods.update(evaluation_methods(ctx, None, baseline_params(site), k=evaluation.k))
            steps = progress(context, f"{site.name} {day} evaluation")
            steps.say(
                f"scoring {len(methods)} methods as of {as_of.isoformat()} on "
                f"{len(ctx.history):,} clicks"
            )
            result = evaluate_day(
                ctx.history,
                day,
                site.tz,
                methods,
                k=evaluation.k,
                until=as_of,
                groups=served.groups,
                earlier=earlier,
                progress=steps,
            )
            if not base.policy and base.ranker is not None:
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
                f"{base.policy or 'the ranker for every group'}, fresh popularity's "
                f"half-life {base.fresh_half_life_hours:g} h"
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
