"""The evaluation.md table on the Globo.com clicks: the served lists against the baselines.

    python benchmarks/evaluate_globo.py            # tuning days 2017-10-08..10, both protocols

Reads the ``globo`` site of ``$RECS_SITES_DIR`` (default ``sites/``) through the project's CSV
event source, with the site's own folder (``$RECS_GLOBO_DIR``, default
``../shared/data/globo/clicks``) and file glob. For every evaluation day D: trains ALS on the 14
days before D's start (the ``als`` baseline and the ranker's ALS candidates), trains the
LightGBM ranker as of D's start (the ALS features it trains on come from a model trained before
its oldest anchor, so they never saw a label), and scores **what readers are served**
(``served``: ``core/serving.recommendations_as_of``, the function behind ``user_recommendations``
and ``recs recommend``, with the click window the asset reads and every earlier read excluded)
for every test reader, next to the baselines (``pop_decay`` at every tuned half-life included),
with both protocols, for all test readers and per reader group (active within 48 h, older
history, no history in the ranker's click window). Prints Markdown tables of means over the days
(each day reader-weighted over its slots), with the time and peak memory of training and
scoring. Exits with 2 and says so when the data is not there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recs_pipeline import settings
from recs_pipeline.adapters.lake_windows import page_views
from recs_pipeline.adapters.sources import event_source
from recs_pipeline.assets.models import als_params
from recs_pipeline.assets.ranking import baseline_params, ranker_params
from recs_pipeline.core.als import AlsModel
from recs_pipeline.core.baselines import Lists, click_als, fill_lists
from recs_pipeline.core.candidates import ClickHistory, similar_matrix
from recs_pipeline.core.evaluation import ALL, METRICS, best_baseline, evaluate_day, summarise_days
from recs_pipeline.core.ranker import (
    RankerModel,
    RankingContext,
    anchors_before,
    evaluation_methods,
    train_ranker,
)
from recs_pipeline.core.serving import (
    GROUPS,
    ServedLists,
    ServingInputs,
    recommendations_as_of,
)
from recs_pipeline.core.similarity import similar_articles
from recs_pipeline.core.site import SiteConfig, load_site
from recs_pipeline.core.timeframe import day_bounds, day_of, window_days

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "globo" / "clicks"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recent_similar(
    als: AlsModel | None, history: ClickHistory, moment: pd.Timestamp, half_life_days: float
) -> pd.DataFrame | None:
    """Similar articles among the articles clicked in the 48 hours before the moment (what
    ``models.similar.recent_days: 2`` does in the asset)."""
    if als is None:
        return None
    now = moment.value / 1e9
    window = history.span(now - 48 * 3600, now)
    recent = pd.Index(history.articles[np.unique(history.article_code[window])])
    first_seen = pd.Series(
        pd.to_datetime(history.first_seen, unit="s", utc=True), index=history.articles
    )
    return similar_articles(
        als, first_seen, moment, pd.Timedelta(days=half_life_days), top_k=10, among=recent
    )


def hindsight_ceiling(history: ClickHistory, hours: float, k: int) -> Any:
    """Not a method: one list for every reader, ranked by the clicks of the scored slot itself.

    It knows the future, so it bounds what any popularity-like (same list for everyone) method
    can score in the 2-hour protocol; printed beside the table to show how much room there is.
    """

    def lists(moment: pd.Timestamp, users: np.ndarray) -> Lists:
        period = history.span(moment, moment + pd.Timedelta(hours=hours))
        counts = np.bincount(history.article_code[period], minlength=len(history.articles))
        codes = np.flatnonzero(counts)
        order = codes[np.lexsort((codes, -counts[codes]))][: k + 200]
        return fill_lists(history, history.cut(moment), users, k, None, order)

    return lists


def serve_window(
    site: SiteConfig,
    history: ClickHistory,
    clicks: pd.DataFrame,
    moment: pd.Timestamp,
    model: RankerModel | None,
    als: AlsModel | None,
    similar: pd.DataFrame | None,
) -> None:
    """What one refresh of ``user_recommendations`` costs: every reader of the engagement
    window gets ``per_user`` articles as of ``moment``, every earlier click excluded."""
    end = history.cut(moment)
    window = history.span(moment - pd.Timedelta(days=site.engagement.window_days), moment)
    readers = pd.Index(history.users.to_numpy()[np.unique(history.user_code[window])])
    seen = pd.DataFrame(
        {
            "user_id": history.users.to_numpy()[history.user_code[:end]],
            "article_id": history.articles.to_numpy()[history.article_code[:end]],
        }
    ).drop_duplicates()
    first_day = window_days(day_of(moment, site.tz), site.models.ranker.history_days + 1)[0]
    window_start, _ = day_bounds(first_day, site.tz)
    recent = clicks.loc[(clicks["ts"] >= window_start) & (clicks["ts"] < moment)]
    inputs = ServingInputs(
        moment=moment,
        tz=site.tz,
        clicks=recent,
        seen=seen,
        popular=pd.DataFrame(columns=["rank", "article_id", "score"]),
        als=als,
        similar=similar,
        ranker=model,
        fresh_half_life_hours=site.models.popular.fresh_half_life_hours,
        readers=readers,
    )
    before = peak_mb()
    began = time.perf_counter()
    recs = recommendations_as_of(inputs, site.models.per_user, site.models.ranker.active_hours)
    seconds = time.perf_counter() - began
    firsts = recs.loc[recs["rank"] == 1]
    print(
        f"{moment.isoformat()}: {len(readers):,} readers of the {site.engagement.window_days}-day "
        f"window, {len(recs):,} rows in {seconds:.1f}s "
        f"({1000 * seconds / max(len(readers), 1):.2f} ms per reader); readers by group and "
        f"source {firsts.groupby(['group', 'source']).size().to_dict()}; peak RSS "
        f"{before:.0f} -> {peak_mb():.0f} MB",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("RECS_GLOBO_DIR", DEFAULT_DATA)),
        help="folder of clicks_hour_*.csv.gz (RECS_GLOBO_DIR)",
    )
    parser.add_argument("--days", nargs="+", default=["2017-10-08", "2017-10-09", "2017-10-10"])
    parser.add_argument("--no-ranker", action="store_true", help="serve fresh popularity only")
    parser.add_argument(
        "--ranker-alone",
        action="store_true",
        help="also score the ranker on its own over the whole click history (slow)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the per-slot results")
    parser.add_argument(
        "--serve-window",
        action="store_true",
        help="instead of evaluating, time one refresh of user_recommendations at each day's start: "
        "lists for every reader of the engagement window",
    )
    args = parser.parse_args()

    data: Path = args.data
    os.environ["RECS_GLOBO_DIR"] = str(data)
    site = load_site(settings.sites_dir() / "globo.yaml")
    glob = site.events.file_glob
    if not data.is_dir() or not any(data.glob(glob)):
        print(
            f"The Globo clicks are not at {data} ({glob}).\n"
            "Set RECS_GLOBO_DIR or --data to the folder of the public Globo.com dataset; "
            "nothing was evaluated.",
            file=sys.stderr,
        )
        return 2
    tz = site.tz
    last_day = dt.date.fromisoformat(max(args.days))

    began = time.perf_counter()
    days = [
        site.start_date + dt.timedelta(days=i) for i in range((last_day - site.start_date).days + 1)
    ]
    frames = [result.events for _, result in event_source(site).read_days(days)]
    clicks = page_views(pd.concat(frames, ignore_index=True))
    history = ClickHistory.from_events(clicks)
    load_seconds = time.perf_counter() - began
    print(
        f"read {len(history):,} clicks of {len(history.users):,} readers and "
        f"{len(history.articles):,} articles through the CSV source in {load_seconds:.0f}s",
        flush=True,
    )

    als_config = als_params(site)
    window = site.engagement.window_days
    params = ranker_params(site)
    baselines = baseline_params(site)
    half_life = site.models.similar.half_life_days
    als_cache: dict[str, AlsModel | None] = {}
    timings: list[dict[str, float | str]] = []

    def als_as_of(day: str) -> AlsModel | None:
        if day not in als_cache:
            start, _ = day_bounds(day, tz)
            als_cache[day] = click_als(history, start, window, als_config)
        return als_cache[day]

    results = []
    ceilings: list[pd.DataFrame] = []
    for day in sorted(args.days):
        start, _ = day_bounds(day, tz)
        # The ranker's ALS features come from a model trained before its oldest anchor.
        oldest_anchor = anchors_before(start, params)[0][0]
        models_day = day_of(oldest_anchor, tz).isoformat()
        t0 = time.perf_counter()
        als = als_as_of(day)
        als_seconds = time.perf_counter() - t0
        similar_today = recent_similar(als, history, start, half_life)
        context = RankingContext(
            history,
            tz,
            als=als,
            similar=similar_matrix(history, similar_today) if similar_today is not None else None,
        )
        model = None
        train_seconds = 0.0
        if not args.no_ranker:
            before = als_as_of(models_day)
            train_context = RankingContext(
                history,
                tz,
                als=before,
                similar=similar_matrix(history, s)
                if (s := recent_similar(before, history, start, half_life)) is not None
                else None,
            )
            t0 = time.perf_counter()
            model = train_ranker(train_context, start, params, baselines)
            train_seconds = time.perf_counter() - t0
            print(
                f"{day}: ranker trained in {train_seconds:.0f}s on "
                f"{model.info['training_rows']:,} rows / {model.info['training_groups']:,} "
                f"readers; validation NDCG ranker "
                f"{model.info['validation'].get('ranker', {}).get('ndcg', 0):.3f} vs pop_decay "
                f"{model.info['validation'].get('pop_decay', {}).get('ndcg', 0):.3f}",
                flush=True,
            )
        if args.serve_window:
            serve_window(site, history, clicks, start, model, als, similar_today)
            continue
        methods: dict[str, Any] = evaluation_methods(
            context, model if args.ranker_alone else None, baselines, k=site.models.evaluation.k
        )
        served = ServedLists(
            history,
            clicks,
            ServingInputs(
                moment=start,
                tz=tz,
                clicks=clicks.iloc[:0],
                seen=pd.DataFrame(columns=["user_id", "article_id"]),
                popular=pd.DataFrame(columns=["rank", "article_id", "score"]),
                als=als,
                similar=similar_today,
                ranker=model,
                fresh_half_life_hours=site.models.popular.fresh_half_life_hours,
            ),
            n=site.models.evaluation.k,
            active_hours=site.models.ranker.active_hours,
            clicks_days=site.models.ranker.history_days + 1,
        )
        methods = {"served": served, **methods}
        t0 = time.perf_counter()
        result = evaluate_day(
            history, day, tz, methods, k=site.models.evaluation.k, groups=served.groups
        )
        eval_seconds = time.perf_counter() - t0
        results.append(result)
        ceilings.append(
            evaluate_day(
                history,
                day,
                tz,
                {"hindsight_ceiling": hindsight_ceiling(history, 2.0, site.models.evaluation.k)},
                k=site.models.evaluation.k,
                protocols=("two_hour",),
            )
        )
        timings.append(
            {
                "day": day,
                "als_training_s": round(als_seconds, 1),
                "ranker_training_s": round(train_seconds, 1),
                "served_s": round(served.seconds, 1),
                "served_s_per_slot": round(served.seconds / max(served.slots, 1), 1),
                "readers_served": served.readers,
                "served_ms_per_reader": round(1000 * served.seconds / max(served.readers, 1), 2),
                "evaluation_s": round(eval_seconds, 1),
                "peak_rss_mb": round(peak_mb()),
            }
        )
        print(f"{day}: evaluated in {eval_seconds:.0f}s", flush=True)
        print(pd.DataFrame([timings[-1]]).to_markdown(index=False), flush=True)

    if args.serve_window:
        print(f"peak memory of the whole run: {peak_mb():.0f} MB")
        return 0
    frame = pd.concat(results, ignore_index=True)
    if args.out:
        frame.assign(slot=frame["slot"].astype(str)).to_parquet(args.out, index=False)
    summary = summarise_days(frame)
    for protocol in ("next_day", "two_hour"):
        table = summary.loc[(summary["protocol"] == protocol) & (summary["group"] == ALL)]
        table = table[["method", *METRICS]].sort_values("ndcg", ascending=False)
        print(f"\n{protocol}, every test reader (means over {', '.join(sorted(args.days))}):\n")
        print(table.to_markdown(index=False, floatfmt=".3f"))
        print(f"\n{protocol} NDCG@10 by reader group (test readers per group):\n")
        wide = summary.loc[summary["protocol"] == protocol].pivot_table(
            index="method", columns="group", values="ndcg"
        )
        readers = summary.loc[
            (summary["protocol"] == protocol) & (summary["method"] == "served")
        ].set_index("group")["users"]
        order = [g for g in (ALL, *GROUPS) if g in wide.columns]
        wide = wide[order].sort_values(ALL, ascending=False)
        wide.columns = [f"{g} ({int(readers.get(g, 0)):,})" for g in order]
        print(wide.to_markdown(floatfmt=".3f"))
        for group in order:
            best = best_baseline(summary, protocol, group)
            mine = summary.loc[
                (summary["protocol"] == protocol)
                & (summary["group"] == group)
                & (summary["method"] == "served")
            ]
            if best is not None and len(mine):
                ndcg = float(mine["ndcg"].iloc[0])
                print(
                    f"- {protocol} {group}: served {ndcg:.3f} = "
                    f"{ndcg / max(float(best['ndcg']), 1e-12):.3f} x best baseline "
                    f"{best['method']} {float(best['ndcg']):.3f}"
                )
    ceiling_rows = summarise_days(pd.concat(ceilings, ignore_index=True))
    ceiling = ceiling_rows.loc[ceiling_rows["group"] == ALL].iloc[0]
    best_two_hour = best_baseline(summary, "two_hour")
    best_ndcg = float(best_two_hour["ndcg"]) if best_two_hour is not None else float("nan")
    print(
        f"hindsight ceiling of one list for every reader (ranked by the slot's own clicks): "
        f"NDCG@10 {ceiling['ndcg']:.3f} = {ceiling['ndcg'] / best_ndcg:.2f} x best baseline"
    )
    print("\n" + pd.DataFrame(timings).to_markdown(index=False))
    print(f"\npeak memory of the whole run: {peak_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
