"""Interaction matrix construction, the shared top-k helper, and the ALS wrapper."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from recs_pipeline.core.als import (
    AlsModel,
    AlsParams,
    confidence_matrix,
    load_model,
    save_model,
    train_als,
)
from recs_pipeline.core.matrix import InteractionMatrix, build_matrix, top_k_per_row

SMALL = AlsParams(factors=8, iterations=8, seed=7)


def _interactions(
    n_users: int = 40, n_articles: int = 25, nnz: int = 300, seed: int = 0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"u{i:03d}" for i in rng.integers(0, n_users, nnz)],
            "article_id": [f"a{i:03d}" for i in rng.integers(0, n_articles, nnz)],
            "weight": rng.uniform(1.0, 60.0, nnz),
        }
    )


def test_build_matrix_sums_duplicates_and_sorts_ids() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u2", "u1"],
            "article_id": ["b", "a", "b", "c"],
            "weight": [1.5, 2.0, 3.0, 4.0],
        }
    )
    built = build_matrix(frame)
    assert list(built.user_ids) == ["u1", "u2"]
    assert list(built.article_ids) == ["a", "b", "c"]
    assert built.user_ids.dtype == object
    assert built.matrix.dtype == np.float32
    assert isinstance(built.matrix, scipy.sparse.csr_matrix)
    np.testing.assert_array_equal(built.matrix.toarray(), [[2.0, 0.0, 4.0], [0.0, 4.5, 0.0]])
    assert built.user_index() == {"u1": 0, "u2": 1}
    assert built.article_index() == {"a": 0, "b": 1, "c": 2}


def test_build_matrix_is_independent_of_row_order() -> None:
    frame = _interactions()
    a = build_matrix(frame)
    b = build_matrix(frame.sample(frac=1.0, random_state=3))
    assert list(a.user_ids) == list(b.user_ids)
    assert list(a.article_ids) == list(b.article_ids)
    np.testing.assert_allclose(a.matrix.toarray(), b.matrix.toarray(), rtol=1e-6)


def test_build_matrix_drops_zero_weights_and_rejects_bad_ones() -> None:
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "article_id": ["a", "b"], "weight": [1.0, 0.0]})
    built = build_matrix(frame)
    assert list(built.user_ids) == ["u1"]
    assert list(built.article_ids) == ["a"]
    with pytest.raises(ValueError, match="negative"):
        build_matrix(frame.assign(weight=[1.0, -1.0]))
    with pytest.raises(ValueError, match="missing"):
        build_matrix(frame.assign(weight=[1.0, np.nan]))
    with pytest.raises(ValueError, match="lacks columns"):
        build_matrix(frame.drop(columns="weight"))


def test_interaction_matrix_checks_shape() -> None:
    with pytest.raises(ValueError, match="does not match"):
        InteractionMatrix(
            matrix=scipy.sparse.csr_matrix((2, 2), dtype=np.float32),
            user_ids=np.array(["u1"], dtype=object),
            article_ids=np.array(["a", "b"], dtype=object),
        )


def test_top_k_per_row_breaks_ties_by_column_and_skips_excluded() -> None:
    scores = np.array(
        [
            [0.5, 0.9, 0.5, 0.5, -np.inf],
            [-np.inf, -np.inf, 0.1, -np.inf, -np.inf],
        ],
        dtype=np.float32,
    )
    rows, cols, values, ranks = top_k_per_row(scores, 3)
    assert rows.tolist() == [0, 0, 0, 1]
    assert cols.tolist() == [1, 0, 2, 2]  # the 0.5 tie goes to the lower columns
    assert ranks.tolist() == [0, 1, 2, 0]
    np.testing.assert_allclose(values, [0.9, 0.5, 0.5, 0.1])


def test_top_k_per_row_matches_a_brute_force_sort_on_tie_heavy_blocks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_rows, n_cols = int(rng.integers(1, 10)), int(rng.integers(1, 12))
        scores = rng.integers(-2, 3, size=(n_rows, n_cols)).astype(np.float32)
        scores[rng.random((n_rows, n_cols)) < 0.3] = -np.inf
        k = int(rng.integers(1, 14))
        expected = []
        for r in range(n_rows):
            row = scores[r]
            candidates = sorted(
                (c for c in range(n_cols) if row[c] > -np.inf), key=lambda c: (-row[c], c)
            )
            expected += [(r, c, rank) for rank, c in enumerate(candidates[:k])]
        rows, cols, _, ranks = top_k_per_row(scores, k)
        assert list(zip(rows.tolist(), cols.tolist(), ranks.tolist(), strict=True)) == expected


def test_als_model_rejects_non_finite_factors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        AlsModel(
            user_ids=np.array(["u"], dtype=object),
            article_ids=np.array(["a"], dtype=object),
            user_factors=np.array([[np.nan]], dtype=np.float32),
            item_factors=np.array([[1.0]], dtype=np.float32),
            params=AlsParams(factors=1),
            training_seconds=0.0,
        )


def test_confidence_matrix_alpha_and_bm25() -> None:
    built = build_matrix(_interactions())
    plain = confidence_matrix(built.matrix, AlsParams(bm25=False, alpha=3.0))
    np.testing.assert_allclose(plain.toarray(), 3.0 * built.matrix.toarray(), rtol=1e-6)
    weighted = confidence_matrix(built.matrix, AlsParams(bm25=True, alpha=2.0))
    assert weighted.dtype == np.float32
    assert weighted.nnz == built.matrix.nnz
    np.testing.assert_array_equal(weighted.indices, built.matrix.indices)
    assert (weighted.data > 0).all()
    assert not np.allclose(weighted.toarray(), 2.0 * built.matrix.toarray())


def test_bm25_keeps_a_user_who_read_everything_positive() -> None:
    # implicit's idf is log(N) - log1p(df): negative for a user who read every article.
    frame = pd.DataFrame(
        {
            "user_id": ["all"] * 3 + ["one"],
            "article_id": ["a", "b", "c", "a"],
            "weight": [1.0, 1.0, 1.0, 1.0],
        }
    )
    confidence = confidence_matrix(build_matrix(frame).matrix, AlsParams(bm25=True))
    assert (confidence.data > 0).all()


def test_train_als_shapes_and_ids() -> None:
    built = build_matrix(_interactions())
    model = train_als(built, SMALL)
    assert model.user_factors.shape == (len(built.user_ids), 8)
    assert model.item_factors.shape == (len(built.article_ids), 8)
    assert model.user_factors.dtype == np.float32
    assert model.item_factors.dtype == np.float32
    assert list(model.user_ids) == list(built.user_ids)
    assert list(model.article_ids) == list(built.article_ids)
    assert np.isfinite(model.user_factors).all()
    assert model.training_seconds >= 0.0
    assert model.params == SMALL


def test_train_als_is_deterministic_for_a_seed() -> None:
    built = build_matrix(_interactions())
    first = train_als(built, SMALL)
    second = train_als(built, SMALL)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    other = train_als(built, AlsParams(factors=8, iterations=8, seed=8))
    assert not np.array_equal(first.item_factors, other.item_factors)


def test_train_als_rejects_degenerate_inputs() -> None:
    empty = build_matrix(pd.DataFrame({"user_id": [], "article_id": [], "weight": []}))
    with pytest.raises(ValueError, match="no users"):
        train_als(empty, SMALL)
    single = build_matrix(
        pd.DataFrame({"user_id": ["u1", "u2"], "article_id": ["a", "a"], "weight": [1.0, 2.0]})
    )
    with pytest.raises(ValueError, match="1 article"):
        train_als(single, SMALL)


def test_als_params_validation_and_json() -> None:
    params = AlsParams(factors=3, bm25=False, seed=1)
    assert AlsParams.from_json(params.to_json()) == params
    with pytest.raises(ValueError):
        AlsParams(factors=0)
    with pytest.raises(ValueError):
        AlsParams(alpha=0.0)
    with pytest.raises(ValueError, match="unknown"):
        AlsParams.from_json('{"factors": 3, "surprise": 1}')


def test_save_load_round_trip_is_exact() -> None:
    frame = _interactions()
    frame.loc[0, "user_id"] = "ünïcode-user/✓"
    model = train_als(build_matrix(frame), SMALL)
    data = save_model(model)
    assert isinstance(data, bytes)
    loaded = load_model(data)
    assert list(loaded.user_ids) == list(model.user_ids)
    assert list(loaded.article_ids) == list(model.article_ids)
    assert loaded.user_ids.dtype == object
    assert all(isinstance(u, str) for u in loaded.user_ids)
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.user_factors.dtype == np.float32
    assert loaded.params == model.params
    assert loaded.training_seconds == model.training_seconds
    # Nothing in the archive needs pickle.
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)


def test_load_model_rejects_unknown_version() -> None:
    model = AlsModel(
        user_ids=np.array(["u"], dtype=object),
        article_ids=np.array(["a", "b"], dtype=object),
        user_factors=np.zeros((1, 2), dtype=np.float32),
        item_factors=np.zeros((2, 2), dtype=np.float32),
        params=AlsParams(),
        training_seconds=0.0,
    )
    with np.load(io.BytesIO(save_model(model))) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["format_version"] = np.array(99)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError, match="version 99"):
        load_model(buffer.getvalue())
