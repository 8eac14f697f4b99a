"""Postgres IO managers (Dagster ships none): day-partitioned DataFrames as database tables.

- ``PostgresIOManager`` stores an asset in ``<schema>.<site>__<asset>`` and loads it back: each
  run replaces exactly its days' rows in one transaction (see ``adapters.postgres_tables``).
- ``LakeAndTablesIOManager`` is the lake IO manager that also mirrors some assets into such
  tables. When the serving database is Postgres, the code location binds it in place of the lake
  IO manager so the serving-side frames (``popular_articles``, ``similar_articles``,
  ``user_recommendations``) are queryable by analysts next to the published tables. The lake
  stays the source of truth: inputs are always loaded from the lake.
"""

from __future__ import annotations

from typing import Final

import dagster as dg
import pandas as pd
from pydantic import Field

from recs_pipeline.adapters.postgres_tables import PostgresTables
from recs_pipeline.core import asset_names as names
from recs_pipeline.core import schemas
from recs_pipeline.resources import LakeIOManager, site_and_asset

#: Assets the code location mirrors into Postgres when the serving database is Postgres.
MIRRORED_ASSETS: Final = (
    names.POPULAR_ARTICLES,
    names.SIMILAR_ARTICLES,
    names.USER_RECOMMENDATIONS,
)


def _days(context: dg.OutputContext | dg.InputContext, what: str) -> list[str]:
    if not context.has_asset_partitions:
        raise ValueError(f"{what}: only day-partitioned assets are stored in Postgres tables")
    return list(context.asset_partition_keys)


class PostgresIOManager(dg.ConfigurableIOManager):
    """Stores day-partitioned DataFrame assets as Postgres tables and loads them back.

    A single-run backfill hands over one frame for a range of days: all of the range's rows are
    replaced in one transaction, days without rows included (they end up empty).
    """

    url: str = Field(description="postgresql:// URL (from RECS_DATABASE_URL via dg.EnvVar)")
    schema_name: str = Field(default="analytics", description="Schema of the asset tables")

    def tables(self) -> PostgresTables:
        return PostgresTables(self.url, self.schema_name)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        site, asset = site_and_asset(context.asset_key)
        tables = self.tables()
        rows = tables.replace_days(site, asset, _days(context, f"{site}/{asset}"), obj)
        context.add_output_metadata(
            {
                "dagster/table_name": dg.MetadataValue.text(tables.qualified(site, asset)),
                "table_rows_written": dg.MetadataValue.int(rows),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        site, asset = site_and_asset(context.asset_key)
        days = _days(context, f"{site}/{asset}")
        frame = self.tables().read_days(site, asset, days)
        return frame if frame is not None else pd.DataFrame(columns=[schemas.DATE])


class LakeAndTablesIOManager(LakeIOManager):
    """The lake IO manager, plus a Postgres table for the assets named in ``mirrored``.

    The lake is written first; the table afterwards, in its own transaction, so a table never
    holds days the lake lacks. Inputs load from the lake.
    """

    database_url: str = Field(description="postgresql:// URL (from RECS_DATABASE_URL)")
    schema_name: str = Field(default="analytics", description="Schema of the mirrored tables")
    mirrored: list[str] = Field(
        default_factory=lambda: list(MIRRORED_ASSETS),
        description="Asset names (without the site) also written as tables",
    )

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        super().handle_output(context, obj)
        site, asset = site_and_asset(context.asset_key)
        if obj is None or asset not in self.mirrored:
            return
        days = _days(context, f"{site}/{asset}")
        if isinstance(obj, pd.DataFrame):
            frame = obj
        else:
            # Days handed over one at a time are gone once written: the table copies what the
            # lake now holds for the run's days (one transaction, as for a frame).
            stored = self.lake().read_partitions(site, asset, days)
            frame = stored if stored is not None else pd.DataFrame(columns=[schemas.DATE])
        tables = PostgresTables(self.database_url, self.schema_name)
        rows = tables.replace_days(site, asset, days, frame)
        context.add_output_metadata(
            {
                "dagster/table_name": dg.MetadataValue.text(tables.qualified(site, asset)),
                "table_rows_written": dg.MetadataValue.int(rows),
            }
        )
