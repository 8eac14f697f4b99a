"""Implicit-feedback ALS: training, and a pickle-free on-disk format.

The factors are the only state recommendation and similarity need, so the model is kept as plain
arrays plus ids rather than as an ``implicit`` object: that keeps the stored artefact independent
of the library version and loadable without unpickling untrusted bytes.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import scipy.sparse
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import bm25_weight
from threadpoolctl import threadpool_limits

from recs_pipeline.core.matrix import InteractionMatrix

__all__ = ["AlsModel", "AlsParams", "confidence_matrix", "load_model", "save_model", "train_als"]

#: Version of the ``save_model`` layout; bump when the stored arrays change.
FORMAT_VERSION = 1

#: Floor for bm25-weighted confidences. implicit's bm25 idf is ``log(N) - log1p(df)``, which goes
#: negative for a user who read (nearly) every article; implicit reads a negative confidence as an
#: explicit dislike, so such entries are kept as a very weak positive instead.
_MIN_CONFIDENCE = 1e-3

#: implicit's own (OpenMP) threads. One thread makes training reproducible by construction, which
#: the pipeline relies on (re-running a partition must give the same model), and the CPU budget of
#: a run is 2 cores anyway.
_NUM_THREADS = 1


@dataclass(frozen=True)
class AlsParams:
    """Hyper-parameters of one ALS training run (stored with the model)."""

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 1.0
    bm25: bool = True
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    seed: int = 42

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ValueError("factors must be >= 1")
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if self.regularization < 0:
            raise ValueError("regularization must be >= 0")
        if not self.alpha > 0:
            raise ValueError("alpha must be > 0")
        if self.bm25_k1 < 0:
            raise ValueError("bm25_k1 must be >= 0")
        if not 0 <= self.bm25_b <= 1:
            raise ValueError("bm25_b must be within [0, 1]")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlsParams:
        """Parse ``to_json`` output; unknown keys are an error so a format drift is not silent."""
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ALS parameters {sorted(unknown)}")
        return cls(**data)


@dataclass
class AlsModel:
    """Trained factors; row ``i`` of ``user_factors`` is ``user_ids[i]`` (same for items)."""

    user_ids: np.ndarray  # object array of str
    article_ids: np.ndarray  # object array of str
    user_factors: np.ndarray  # float32, users x factors
    item_factors: np.ndarray  # float32, articles x factors
    params: AlsParams
    training_seconds: float

    def __post_init__(self) -> None:
        if self.user_factors.ndim != 2 or self.item_factors.ndim != 2:
            raise ValueError("factors must be 2-d arrays")
        if self.user_factors.shape[0] != len(self.user_ids):
            raise ValueError("user_factors rows do not match user_ids")
        if self.item_factors.shape[0] != len(self.article_ids):
            raise ValueError("item_factors rows do not match article_ids")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ValueError("user and item factors have different widths")
        # A NaN factor would silently empty a user's list in the top-k selection; fail loudly.
        if not (np.isfinite(self.user_factors).all() and np.isfinite(self.item_factors).all()):
            raise ValueError("factors contain NaN or infinite values")


def confidence_matrix(
    matrix: scipy.sparse.csr_matrix, params: AlsParams
) -> scipy.sparse.csr_matrix:
    """``alpha`` x (optionally bm25-weighted) interaction matrix, as float32 CSR.

    bm25 is applied the way implicit's own examples do it, on the articles x users orientation:
    articles are the "documents", so a heavy article's entries are length-normalised and users who
    read almost everything (crawlers, power users) get a low idf.
    """
    confidence = scipy.sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
    if params.bm25:
        weighted = bm25_weight(confidence.T.tocoo(), K1=params.bm25_k1, B=params.bm25_b)
        confidence = scipy.sparse.csr_matrix(weighted.T.tocsr(), dtype=np.float32)
        np.maximum(confidence.data, _MIN_CONFIDENCE, out=confidence.data)
    confidence.data *= np.float32(params.alpha)
    confidence.sort_indices()
    return confidence


def train_als(matrix: InteractionMatrix, params: AlsParams) -> AlsModel:
    """Fit implicit's CPU ALS on ``matrix``; deterministic for a given ``params.seed``.

    BLAS is limited to one thread for the fit: implicit already parallelises over users, and
    OpenBLAS threads inside that make training much slower (implicit warns about it).
    """
    n_users, n_articles = matrix.shape
    if n_users == 0:
        raise ValueError("cannot train ALS: the interaction matrix has no users")
    if n_articles < 2:
        raise ValueError(
            f"cannot train ALS: the interaction matrix has {n_articles} article(s), need >= 2"
        )
    if matrix.matrix.nnz == 0:
        raise ValueError("cannot train ALS: the interaction matrix has no interactions")

    confidence = confidence_matrix(matrix.matrix, params)
    with threadpool_limits(limits=1, user_api="blas"):
        started = time.perf_counter()
        # alpha is already folded into ``confidence``, so implicit's own alpha stays 1.
        als = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,
            dtype=np.float32,
            iterations=params.iterations,
            calculate_training_loss=False,
            num_threads=_NUM_THREADS,
            random_state=params.seed,
        )
        als.fit(confidence, show_progress=False)
        seconds = time.perf_counter() - started

    return AlsModel(
        user_ids=np.asarray(matrix.user_ids, dtype=object).copy(),
        article_ids=np.asarray(matrix.article_ids, dtype=object).copy(),
        user_factors=np.ascontiguousarray(als.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(als.item_factors, dtype=np.float32),
        params=params,
        training_seconds=float(seconds),
    )


def _encode_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 blob + offsets: compact, and loadable without ``allow_pickle`` (object arrays)."""
    encoded = [str(value).encode("utf-8") for value in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(item) for item in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return blob, offsets


def _decode_ids(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    raw = blob.tobytes()
    out = np.empty(len(offsets) - 1, dtype=object)
    out[:] = [raw[start:end].decode("utf-8") for start, end in itertools.pairwise(offsets.tolist())]
    return out


def save_model(model: AlsModel) -> bytes:
    """Serialise to a compressed ``.npz`` (no pickle); ``load_model`` reverses it exactly."""
    user_blob, user_offsets = _encode_ids(model.user_ids)
    article_blob, article_offsets = _encode_ids(model.article_ids)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        format_version=np.array(FORMAT_VERSION, dtype=np.int64),
        user_id_blob=user_blob,
        user_id_offsets=user_offsets,
        article_id_blob=article_blob,
        article_id_offsets=article_offsets,
        user_factors=np.asarray(model.user_factors, dtype=np.float32),
        item_factors=np.asarray(model.item_factors, dtype=np.float32),
        params=np.array(model.params.to_json()),
        training_seconds=np.array(model.training_seconds, dtype=np.float64),
    )
    return buffer.getvalue()


def load_model(data: bytes) -> AlsModel:
    """Read bytes written by ``save_model``; refuses pickled content and unknown versions."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        version = int(npz["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported ALS model format version {version}")
        return AlsModel(
            user_ids=_decode_ids(npz["user_id_blob"], npz["user_id_offsets"]),
            article_ids=_decode_ids(npz["article_id_blob"], npz["article_id_offsets"]),
            user_factors=np.ascontiguousarray(npz["user_factors"], dtype=np.float32),
            item_factors=np.ascontiguousarray(npz["item_factors"], dtype=np.float32),
            params=AlsParams.from_json(str(npz["params"])),
            training_seconds=float(npz["training_seconds"]),
        )
