"""Postgres' binary COPY format for recommendation rows, encoded column-wise with numpy.

Encoding row by row in Python (``Copy.write_row``) costs more than the server spends storing the
rows; here each block of rows is laid out with a few vectorised scatters instead. The format
(https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): a signature, then per
row a 16-bit field count and, per field, a 32-bit length and the value in network byte order
(``int8``, ``text`` as UTF-8, ``int4``, ``int8``, ``float8``); a 16-bit -1 ends the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER: Final = b"\xff\xff"
#: Columns in order: model_id int8, source_entity_id text, rank int4,
#: recommended_article_id text, score float8.
FIELDS: Final = 5
_INT4_MAX: Final = 2**31 - 1


def _utf8(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A string column as (UTF-8 bytes, int64 offsets), without a Python loop."""
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    if array.null_count:
        raise ValueError("null strings cannot be copied")
    if pc.any(pc.match_substring(array, "\x00")).as_py():
        # Postgres text cannot hold NUL: replaced by U+FFFD (``postgres.NUL_REPLACEMENT``).
        array = pc.replace_substring(array, "\x00", "\ufffd")
    _, offsets_buffer, data_buffer = array.buffers()
    assert offsets_buffer is not None
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return data, offsets


def _scatter(out: np.ndarray, positions: np.ndarray, values: np.ndarray) -> None:
    """``out[positions[i] + j] = values[i, j]`` for every row ``i`` and byte ``j``."""
    width = values.shape[1]
    out[positions[:, None] + np.arange(width)] = values


def _be(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values as big-endian bytes, one row per value."""
    encoded = values.astype(dtype)
    return encoded.view(np.uint8).reshape(len(values), -1)


def _copy_strings(
    out: np.ndarray, starts: np.ndarray, data: np.ndarray, offsets: np.ndarray
) -> None:
    lengths = np.diff(offsets)
    total = int(lengths.sum())
    if total == 0:
        return
    source = np.arange(offsets[0], offsets[-1], dtype=np.int64)
    shift = np.repeat(starts - offsets[:-1], lengths)
    out[source + shift] = data[offsets[0] : offsets[-1]]


def encode_block(
    model_id: int,
    source_data: np.ndarray,
    source_offsets: np.ndarray,
    ranks: np.ndarray,
    article_data: np.ndarray,
    article_offsets: np.ndarray,
    scores: np.ndarray,
) -> bytes:
    """The rows of one block (no signature, no trailer)."""
    n = len(ranks)
    if n == 0:
        return b""
    source_len = np.diff(source_offsets)
    article_len = np.diff(article_offsets)
    row_len = 42 + source_len + article_len
    ends = np.cumsum(row_len)
    starts = ends - row_len
    out = np.empty(int(ends[-1]), dtype=np.uint8)

    # field count, model_id (length 8 + value), source length
    head = np.empty((n, 18), dtype=np.uint8)
    head[:, 0:2] = np.frombuffer(np.array([FIELDS], dtype=">i2").tobytes(), dtype=np.uint8)
    head[:, 2:6] = np.frombuffer(np.array([8], dtype=">i4").tobytes(), dtype=np.uint8)
    head[:, 6:14] = np.frombuffer(np.array([model_id], dtype=">i8").tobytes(), dtype=np.uint8)
    head[:, 14:18] = _be(source_len, ">i4")
    _scatter(out, starts, head)
    _copy_strings(out, starts + 18, source_data, source_offsets)

    # rank (length 4 + value), article length
    after_source = starts + 18 + source_len
    middle = np.empty((n, 12), dtype=np.uint8)
    middle[:, 0:4] = np.frombuffer(np.array([4], dtype=">i4").tobytes(), dtype=np.uint8)
    middle[:, 4:8] = _be(ranks, ">i4")
    middle[:, 8:12] = _be(article_len, ">i4")
    _scatter(out, after_source, middle)
    _copy_strings(out, after_source + 12, article_data, article_offsets)

    # score (length 8 + value)
    tail = np.empty((n, 12), dtype=np.uint8)
    tail[:, 0:4] = np.frombuffer(np.array([8], dtype=">i4").tobytes(), dtype=np.uint8)
    tail[:, 4:12] = _be(scores, ">f8")
    _scatter(out, after_source + 12 + article_len, tail)
    return out.tobytes()


def recommendation_copy_data(
    model_id: int, rows: pd.DataFrame, rows_per_block: int = 50_000
) -> Iterator[bytes]:
    """The whole binary COPY stream for ``rows`` (columns ``s``, ``r``, ``a``, ``x`` as the
    publisher's validation returns them), in blocks of bounded size."""
    ranks = rows["r"].to_numpy(dtype=np.int64)
    if len(ranks) and (ranks.max() > _INT4_MAX or ranks.min() < 1):
        raise ValueError("ranks must fit a Postgres integer and be >= 1")
    scores = rows["x"].to_numpy(dtype=np.float64)
    source_data, source_offsets = _utf8(rows["s"])
    article_data, article_offsets = _utf8(rows["a"])
    yield SIGNATURE
    for start in range(0, len(ranks), rows_per_block):
        stop = min(start + rows_per_block, len(ranks))
        yield encode_block(
            model_id,
            source_data,
            source_offsets[start : stop + 1],
            ranks[start:stop],
            article_data,
            article_offsets[start : stop + 1],
            scores[start:stop],
        )
    yield TRAILER
