"""The page registry's home in the lake: ``<lake>/<site>/page_registry/registry.parquet``.

One file per site, replaced whole (written to a temporary name, then renamed), read at the start
of a ``pages`` run and written at its end; runs of a site are serialised by the run queue.
"""

from __future__ import annotations

import io
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.core.page_registry import empty_registry, normalise

REGISTRY_FOLDER = "page_registry"
REGISTRY_FILE = "registry.parquet"


class PageRegistryStore:
    def __init__(self, lake: Lake, site: str) -> None:
        self.fs = lake.fs
        self.folder = f"{lake.base}/{site}/{REGISTRY_FOLDER}"
        self.path = f"{self.folder}/{REGISTRY_FILE}"

    def read(self) -> pd.DataFrame:
        if self.fs.get_file_info(self.path).type != pafs.FileType.File:
            return empty_registry()
        with self.fs.open_input_file(self.path) as handle:
            return normalise(pq.read_table(handle).to_pandas())

    def write(self, registry: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        pq.write_table(
            pa.Table.from_pandas(normalise(registry), preserve_index=False),
            buffer,
            compression="zstd",
        )
        self.fs.create_dir(self.folder, recursive=True)
        temporary = f"{self.folder}/.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(temporary) as stream:
            stream.write(buffer.getvalue())
        self.fs.move(temporary, self.path)
        return self.path
