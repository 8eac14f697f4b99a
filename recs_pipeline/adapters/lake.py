"""The lake: Parquet partitions and model artifacts on a filesystem, hive-style.

Layout: ``<base>/<site>/<asset>/date=YYYY-MM-DD/part-0.parquet`` and
``<base>/<site>/<asset>/date=YYYY-MM-DD/<artifact name>``. A write replaces a whole file at once
(a temporary name renamed into place on disk, a single PUT on S3), so a reader (or a crash) never
sees half a partition, and writing the same frame again gives the same bytes. The ``date``
column lives in the path, not in the file (so DuckDB or pyarrow datasets read the folder with
hive partitioning) and is added back on read.

Built on ``pyarrow.fs``: ``lake_from_url("s3://bucket/prefix")`` gives the same lake on S3 or any
S3-compatible store (MinIO...), configured by the standard AWS variables.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recs_pipeline.adapters.filesystems import resolve
from recs_pipeline.core import schemas

PART_NAME = "part-0.parquet"


class Lake:
    """Partitioned frames and artifacts under one base path of a pyarrow filesystem."""

    def __init__(self, filesystem: pafs.FileSystem, base: str) -> None:
        self.fs = filesystem
        self.base = base.rstrip("/")

    def __repr__(self) -> str:
        return f"Lake({type(self.fs).__name__}, {self.base!r})"

    def partition_dir(self, site: str, asset: str, day: str) -> str:
        return f"{self.base}/{site}/{asset}/{schemas.DATE}={day}"

    def partition_path(self, site: str, asset: str, day: str) -> str:
        return f"{self.partition_dir(site, asset, day)}/{PART_NAME}"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def _atomic_write(self, path: str, data: bytes) -> None:
        """Replace the file at ``path`` with ``data``; a reader sees the old file or the new one.

        On local disk: a temporary file in the same folder renamed into place. On an object
        store a PUT (or a multipart upload, which appears on completion) is already atomic,
        and a rename there would be a copy plus a delete, so the object is written in place.
        """
        if not self.is_local:
            with self.fs.open_output_stream(path, compression=None) as stream:
                stream.write(data)
            return
        folder = path.rsplit("/", 1)[0]
        self.fs.create_dir(folder, recursive=True)
        temporary = f"{folder}/.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(temporary, compression=None) as stream:
            stream.write(data)
        self.fs.move(temporary, path)

    def write_partition(self, site: str, asset: str, day: str, frame: pd.DataFrame) -> str:
        """Replace one day partition with ``frame`` (its ``date`` column, if any, is dropped)."""
        body = frame.drop(columns=[schemas.DATE], errors="ignore")
        table = pa.Table.from_pandas(body, preserve_index=False)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        path = self.partition_path(site, asset, day)
        self._atomic_write(path, buffer.getvalue())
        return path

    def _read_object_table(
        self, path: str, attempts: int = 5, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """A Parquet object read whole, then parsed.

        An object store has no open file handle to pin a version: reading the footer and the
        row groups in several ranged GETs (or a GET sized by an earlier HEAD) can straddle a
        concurrent rewrite. The object is fetched whole and parsed from memory; a read that
        straddled a rewrite comes back truncated (one GET is served from one version, sized by
        an earlier HEAD), fails to parse, and is retried.
        """
        for attempt in range(1, attempts + 1):
            with self.fs.open_input_stream(path, compression=None) as stream:
                data = stream.read()
            try:
                return pq.read_table(pa.BufferReader(data), columns=columns)
            except (pa.ArrowInvalid, OSError):  # truncated: the object changed under the read
                if attempt == attempts:
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def has_partition(self, site: str, asset: str, day: str) -> bool:
        info = self.fs.get_file_info(self.partition_path(site, asset, day))
        return info.type == pafs.FileType.File

    def read_partition(
        self, site: str, asset: str, day: str, columns: Sequence[str] | None = None
    ) -> pd.DataFrame | None:
        """A day's partition (only ``columns`` of it when given); None when it does not exist."""
        if not self.has_partition(site, asset, day):
            return None
        path = self.partition_path(site, asset, day)
        wanted = None if columns is None else list(columns)
        if self.is_local:
            table = pq.read_table(path, filesystem=self.fs, columns=wanted)
        else:
            table = self._read_object_table(path, columns=wanted)
        frame = table.to_pandas()
        frame.insert(0, schemas.DATE, day)
        return frame

    def read_partitions(
        self, site: str, asset: str, days: Sequence[str], columns: Sequence[str] | None = None
    ) -> pd.DataFrame | None:
        """The existing partitions among ``days`` concatenated; None when none exists."""
        frames = [
            frame
            for day in sorted(days)
            if (frame := self.read_partition(site, asset, day, columns)) is not None
        ]
        non_empty = [frame for frame in frames if not frame.empty]
        if non_empty:
            return pd.concat(non_empty, ignore_index=True)
        return frames[0] if frames else None

    def row_count(self, site: str, asset: str, day: str) -> int:
        """Rows of a partition from the Parquet footer, without reading the data."""
        if not self.has_partition(site, asset, day):
            return 0
        with self.fs.open_input_file(self.partition_path(site, asset, day)) as handle:
            return int(pq.ParquetFile(handle).metadata.num_rows)

    def days(self, site: str, asset: str) -> list[str]:
        """Day keys with a written partition."""
        selector = pafs.FileSelector(f"{self.base}/{site}/{asset}", allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith(f"{schemas.DATE}="):
                day = name.split("=", 1)[1]
                if self.has_partition(site, asset, day) or self.artifacts(site, asset, day):
                    found.append(day)
        return sorted(found)

    def write_artifact(self, site: str, asset: str, day: str, name: str, data: bytes) -> str:
        path = f"{self.partition_dir(site, asset, day)}/{name}"
        self._atomic_write(path, data)
        return path

    def read_artifact(self, site: str, asset: str, day: str, name: str) -> bytes | None:
        path = f"{self.partition_dir(site, asset, day)}/{name}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path, compression=None) as stream:
            return bytes(stream.read())

    def artifacts(self, site: str, asset: str, day: str) -> list[str]:
        selector = pafs.FileSelector(self.partition_dir(site, asset, day), allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        )

    def uri(self, path: str) -> str:
        """A path as a person would paste it (for metadata)."""
        if self.is_local:
            return path
        return f"{self.fs.type_name}://{path}"


def lake_from_url(url: str) -> Lake:
    """A lake from ``RECS_LAKE_URL``: a folder, ``file://`` URL or ``s3://bucket/prefix``."""
    filesystem, base = resolve(url)
    return Lake(filesystem, base)
