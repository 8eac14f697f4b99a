"""LightGBM LambdaRank over the candidates: trained on a time split, validated against baselines.

Training examples are built "as of" anchors: at an anchor T, candidates and features come from the
clicks before T, and a candidate's label is whether the reader clicked it in ``[T, T + label
hours)`` (2 hours: the refresh period, so the model learns what a reader opens before the next
refresh). The last anchors before the as-of moment are held out: the ranker and the baselines are
scored on them with the 2-hour protocol, which is the evidence the publishing gate reads.

The model is stored as LightGBM's own text format plus a JSON of its parameters, data window and
metrics: no pickle, loadable by any LightGBM 4.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse

from recs_pipeline.core.als import AlsModel
from recs_pipeline.core.baselines import BaselineParams, Lists, baseline_lists, baseline_names
from recs_pipeline.core.candidates import (
    HOUR,
    CandidateParams,
    ClickHistory,
    article_stats,
    covisitation,
    generate_candidates,
    similar_matrix,
)
from recs_pipeline.core.evaluation import slot_truth
from recs_pipeline.core.features import FEATURES, candidate_features
from recs_pipeline.core.metrics import ranking_metrics
from recs_pipeline.core.progress import Progress

__all__ = [
    "RankerModel",
    "RankerParams",
    "RankingContext",
    "load_ranker",
    "rank_lists",
    "recommend",
    "save_ranker",
    "train_ranker",
]

FORMAT_VERSION = 1

DEFAULT_BASELINES = BaselineParams()
_METRICS = ("hit_rate", "recall", "ndcg", "mrr", "coverage")


@dataclass(frozen=True)
class RankerParams:
    """Time split, sampling and LightGBM settings of one training run (stored with the model)."""

    label_hours: float = 2.0
    #: Hours between two training anchors: label windows may overlap, so a day gives many
    #: moments to learn from (what is rising at 09:20 differs from 09:00).
    anchor_step_hours: float = 2.0
    training_slots: int = 12
    validation_slots: int = 3
    max_users_per_slot: int = 800
    n_estimators: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 50
    seed: int = 7
    candidates: CandidateParams = field(default_factory=CandidateParams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankerParams:
        values = dict(data)
        values["candidates"] = CandidateParams(**values.get("candidates", {}))
        return cls(**values)


@dataclass
class RankingContext:
    """What candidates and features are computed from: clicks, and the optional ALS model."""

    history: ClickHistory
    tz: ZoneInfo
    als: AlsModel | None = None
    similar: scipy.sparse.csr_matrix | None = None
    categories: pd.Series | None = None


def ranking_context(
    history: ClickHistory,
    tz: ZoneInfo,
    als: AlsModel | None = None,
    similar: pd.DataFrame | None = None,
    categories: pd.Series | None = None,
) -> RankingContext:
    """The one way a ranking context is built: the similar-articles frame becomes a matrix over
    the history's article codes."""
    return RankingContext(
        history=history,
        tz=tz,
        als=als,
        similar=similar_matrix(history, similar) if similar is not None else None,
        categories=categories,
    )


@dataclass
class RankerModel:
    booster: lgb.Booster
    params: RankerParams
    info: dict[str, Any]

    @property
    def features(self) -> list[str]:
        return list(self.booster.feature_name())


def _features_at(
    context: RankingContext,
    moment: pd.Timestamp,
    user_codes: np.ndarray,
    params: CandidateParams,
    covisit: scipy.sparse.csr_matrix | None = None,
) -> tuple[Any, pd.DataFrame]:
    stats = article_stats(context.history, moment, params)
    candidates, _ = generate_candidates(
        context.history,
        moment,
        user_codes,
        params,
        stats=stats,
        als=context.als,
        similar=context.similar,
        covisit=covisit,
    )
    features = candidate_features(
        context.history,
        moment,
        user_codes,
        candidates,
        stats,
        context.tz,
        params.lookback_hours,
        context.categories,
    )
    return candidates, features


def _covisit_at(context: RankingContext, moment: pd.Timestamp, params: CandidateParams) -> Any:
    now = pd.Timestamp(moment).value / 1e9
    history = context.history
    start = history.span(now - params.lookback_hours * HOUR, now).start
    return covisitation(history, start, history.cut(moment), params)


def _examples(
    context: RankingContext,
    anchor: pd.Timestamp,
    params: RankerParams,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, labels and group sizes (readers) of one anchor; readers without a hit dropped."""
    history = context.history
    end = anchor + pd.Timedelta(hours=params.label_hours)
    users, _ = slot_truth(history, anchor, end)
    if len(users) > params.max_users_per_slot:
        users = np.sort(rng.choice(users, size=params.max_users_per_slot, replace=False))
    if not len(users):
        return pd.DataFrame(columns=list(FEATURES)), np.empty(0), np.empty(0, dtype=np.int64)
    candidates, features = _features_at(context, anchor, users, params.candidates)
    n_articles = len(history.articles)
    period = history.span(anchor, end)
    clicked = np.unique(history.user_code[period] * n_articles + history.article_code[period])
    keys = users[candidates.user_row] * n_articles + candidates.article_code
    position = np.minimum(np.searchsorted(clicked, keys), max(len(clicked) - 1, 0))
    labels = (clicked[position] == keys).astype(np.float64) if len(clicked) else np.zeros(len(keys))
    hits = np.bincount(candidates.user_row, weights=labels, minlength=len(users))
    keep = hits[candidates.user_row] > 0
    groups = np.bincount(candidates.user_row[keep], minlength=len(users))
    return features.loc[keep].reset_index(drop=True), labels[keep], groups[groups > 0]


def anchors_before(as_of: pd.Timestamp, params: RankerParams) -> tuple[list, list]:
    """Training and validation anchors, oldest first; every label window ends by ``as_of``.

    Validation anchors are the last ``validation_slots`` label windows before ``as_of``, back to
    back; training anchors are ``anchor_step_hours`` apart and their label windows end by the
    first validation anchor, so no training label is a validation click.
    """
    label = pd.Timedelta(hours=params.label_hours)
    step = pd.Timedelta(hours=params.anchor_step_hours)
    as_of = pd.Timestamp(as_of)
    validation = [
        as_of - label * (params.validation_slots - i) for i in range(params.validation_slots)
    ]
    last_training = (validation[0] if validation else as_of) - label
    training = [
        last_training - step * (params.training_slots - 1 - i) for i in range(params.training_slots)
    ]
    return training, validation


def train_ranker(
    context: RankingContext,
    as_of: pd.Timestamp,
    params: RankerParams = RankerParams(),
    baseline_params: BaselineParams = DEFAULT_BASELINES,
    validate: bool = True,
    progress: Progress | None = None,
) -> RankerModel:
    """Fit LambdaRank on the anchors before ``as_of``; validate on the held-out last anchors.

    Raises ``ValueError`` when the training anchors hold no reader with a hit among the
    candidates (too little data): the caller serves the fallback. ``progress`` hears about each
    anchor built, boosting round and validation anchor (throttled by its own clock).
    """
    rng = np.random.default_rng(params.seed)
    training, validation = anchors_before(as_of, params)
    began = time.perf_counter()
    frames, labels, groups = [], [], []
    rows = 0
    for number, anchor in enumerate(training, start=1):
        x, y, g = _examples(context, anchor, params, rng)
        if len(g):
            frames.append(x)
            labels.append(y)
            groups.append(g)
            rows += len(x)
        if progress is not None:
            progress.step(
                number,
                f"of {len(training)} training anchors built ({rows:,} candidate rows, "
                f"{anchor.isoformat()})",
            )
    if not frames:
        raise ValueError("no training example: no reader clicked a candidate in the label windows")
    x_train = pd.concat(frames, ignore_index=True)
    y_train = np.concatenate(labels)
    g_train = np.concatenate(groups)
    build_seconds = time.perf_counter() - began
    began = time.perf_counter()
    ranker = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        lambdarank_truncation_level=20,
        max_bin=63,
        random_state=params.seed,
        n_jobs=2,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    callbacks = []
    if progress is not None:
        progress.say(
            f"fitting {params.n_estimators} trees on {len(x_train):,} rows, "
            f"{len(g_train):,} reader groups"
        )

        def rounds(env: Any) -> None:
            progress.step(env.iteration + 1, f"of {env.end_iteration} boosting rounds")

        callbacks.append(rounds)
    ranker.fit(x_train, y_train, group=g_train, callbacks=callbacks)
    fit_seconds = time.perf_counter() - began
    booster = ranker.booster_
    importance = booster.feature_importance(importance_type="gain")
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "as_of": pd.Timestamp(as_of).isoformat(),
        "data_window": {
            "history_start": pd.Timestamp(
                context.history.seconds[0] if len(context.history) else 0, unit="s", tz="UTC"
            ).isoformat(),
            "first_training_anchor": training[0].isoformat(),
            "last_label_end": pd.Timestamp(as_of).isoformat(),
        },
        "training_rows": len(x_train),
        "training_groups": len(g_train),
        "training_positives": int(y_train.sum()),
        "build_seconds": round(build_seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "feature_importance": {
            name: round(float(value), 3)
            for name, value in sorted(
                zip(booster.feature_name(), importance, strict=True), key=lambda kv: -kv[1]
            )
        },
        "validation": {},
    }
    model = RankerModel(booster=booster, params=params, info=info)
    if validate:
        if progress is not None:
            progress.say(f"trained in {fit_seconds:.1f} s; validating on {len(validation)} slots")
        model.info["validation"] = validate_ranker(
            model, context, validation, baseline_params, progress=progress
        )
    return model


def validate_ranker(
    model: RankerModel,
    context: RankingContext,
    anchors: list[pd.Timestamp],
    baseline_params: BaselineParams = DEFAULT_BASELINES,
    k: int = 10,
    progress: Progress | None = None,
) -> dict[str, dict[str, float]]:
    """Ranker and baselines on held-out 2-hour slots: reader-weighted means per method."""
    totals: dict[str, dict[str, float]] = {}
    row: dict[str, float]
    history = context.history
    scored = 0
    for number, anchor in enumerate(anchors, start=1):
        end = anchor + pd.Timedelta(hours=model.params.label_hours)
        users, truth = slot_truth(history, anchor, end)
        scored += len(users)
        if progress is not None:
            progress.step(number, f"of {len(anchors)} validation slots ({scored:,} readers)")
        if not len(users):
            continue
        ids = history.users.to_numpy()[users]
        methods: dict[str, Lists] = {"ranker": rank_lists(model, context, anchor, users, k)}
        for name in baseline_names(baseline_params):
            methods[name] = baseline_lists(
                name, history, anchor, users, k, baseline_params, als=context.als
            )
        for name, lists in methods.items():
            metrics = ranking_metrics(lists.as_dict(ids, history.articles), truth, k=k)
            row = totals.setdefault(
                name, dict.fromkeys(("users", "hit_rate", "recall", "ndcg", "mrr", "coverage"), 0.0)
            )
            row["users"] += metrics.users
            for metric in ("hit_rate", "recall", "ndcg", "mrr", "coverage"):
                row[metric] += getattr(metrics, metric) * metrics.users
    for row in totals.values():
        readers = row["users"]
        for metric in _METRICS:
            row[metric] = row[metric] / readers if readers else 0.0
    return totals


_SCORE_BLOCK_USERS = 4000


def rank_lists(
    model: RankerModel,
    context: RankingContext,
    moment: pd.Timestamp,
    user_codes: np.ndarray,
    k: int,
) -> Lists:
    """The ranker's top-``k`` for readers (history codes; -1 = never clicked), in blocks."""
    params = model.params.candidates
    covisit = _covisit_at(context, moment, params)
    stats = article_stats(context.history, moment, params)
    rows, cols, ranks, scores = [], [], [], []
    for begin in range(0, len(user_codes), _SCORE_BLOCK_USERS):
        block = user_codes[begin : begin + _SCORE_BLOCK_USERS]
        candidates, _ = generate_candidates(
            context.history,
            moment,
            block,
            params,
            stats=stats,
            als=context.als,
            similar=context.similar,
            covisit=covisit,
        )
        if not len(candidates):
            continue
        features = candidate_features(
            context.history,
            moment,
            block,
            candidates,
            stats,
            context.tz,
            params.lookback_hours,
            context.categories,
        )
        predicted = np.asarray(
            model.booster.predict(features[model.features], num_threads=2), dtype=np.float64
        )
        order = np.lexsort((candidates.article_code, -predicted, candidates.user_row))
        row = candidates.user_row[order]
        rank = np.arange(len(row)) - np.searchsorted(row, row, side="left") + 1
        take = rank <= k
        rows.append(row[take] + begin)
        cols.append(candidates.article_code[order][take])
        ranks.append(rank[take])
        scores.append(predicted[order][take])
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return Lists(empty, empty.copy(), empty.copy(), np.empty(0))
    return Lists(
        np.concatenate(rows),
        np.concatenate(cols),
        np.concatenate(ranks).astype(np.int64),
        np.concatenate(scores).astype(np.float64),
    )


def recommend(
    model: RankerModel,
    context: RankingContext,
    moment: pd.Timestamp,
    users: list[str] | np.ndarray | pd.Index,
    n: int,
) -> pd.DataFrame:
    """``user_id, rank, article_id, score`` for readers by id (unknown ones: fresh/popular)."""
    ids = pd.Index(pd.unique(np.asarray(users, dtype=object).astype(str)), dtype=object)
    codes = context.history.user_codes(ids)
    lists = rank_lists(model, context, moment, codes, n)
    return pd.DataFrame(
        {
            "user_id": pd.Series(ids.to_numpy()[lists.user_row], dtype=str),
            "rank": lists.rank.astype(np.int64),
            "article_id": pd.Series(
                context.history.articles.to_numpy()[lists.article_code], dtype=str
            ),
            "score": lists.score,
        }
    )


def save_ranker(model: RankerModel) -> tuple[bytes, bytes]:
    """(LightGBM text model, JSON of parameters, data window and metrics)."""
    info = {**model.info, "params": model.params.to_dict(), "features": model.features}
    return (
        model.booster.model_to_string().encode(),
        json.dumps(info, indent=2, default=str).encode(),
    )


def load_ranker(model_text: bytes, info_json: bytes) -> RankerModel:
    info = json.loads(info_json)
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported ranker format {info.get('format_version')}")
    booster = lgb.Booster(model_str=model_text.decode())
    params = RankerParams.from_dict(info.pop("params"))
    info.pop("features", None)
    return RankerModel(booster=booster, params=params, info=info)


def evaluation_methods(
    context: RankingContext,
    model: RankerModel | None,
    baseline_params: BaselineParams = DEFAULT_BASELINES,
    k: int = 10,
) -> dict[str, Any]:
    """The methods the evaluation compares in one run: the ranker (when there is one) and the
    baselines (tuned ``pop_decay`` half-lives included), each (moment, reader codes) -> lists."""
    methods: dict[str, Any] = {}
    if model is not None:
        methods["ranker"] = lambda moment, users: rank_lists(model, context, moment, users, k)
    for name in baseline_names(baseline_params):
        methods[name] = lambda moment, users, name=name: baseline_lists(
            name, context.history, moment, users, k, baseline_params, als=context.als
        )
    return methods
