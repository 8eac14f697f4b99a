"""A short text report of a site: rows per stage and a sample of what readers are served."""

from __future__ import annotations

import pandas as pd

from recs_pipeline.adapters.lake import Lake
from recs_pipeline.adapters.publishing import Publisher
from recs_pipeline.core import asset_names as names
from recs_pipeline.core.site import SiteConfig

STAGES = (
    names.RAW_EVENTS,
    names.QUARANTINED_EVENTS,
    names.PAGES,
    names.ENGAGEMENT,
    names.INTERACTIONS,
    names.POPULAR_ARTICLES,
    names.SIMILAR_ARTICLES,
    names.USER_RECOMMENDATIONS,
)


def stage_rows(lake: Lake, site: str) -> pd.DataFrame:
    """Days and rows written per stage (all days; interactions etc. are per as-of day)."""
    rows = []
    for stage in STAGES:
        days = lake.days(site, stage)
        rows.append(
            {
                "stage": stage,
                "days": len(days),
                "rows": sum(lake.row_count(site, stage, day) for day in days),
                "latest": days[-1] if days else "-",
            }
        )
    models = lake.days(site, names.ALS_MODEL)
    rows.append(
        {
            "stage": names.ALS_MODEL,
            "days": len(models),
            "rows": len(models),
            "latest": models[-1] if models else "-",
        }
    )
    return pd.DataFrame(rows)


def site_summary(site: SiteConfig, lake: Lake, publisher: Publisher, sample_users: int = 3) -> str:
    lines = [f"Site {site.name} ({site.timezone})", "", "Rows per stage:"]
    lines.append(stage_rows(lake, site.name).to_string(index=False))

    lines += ["", "Published model versions:"]
    versions = publisher.versions(site.name)
    if not versions:
        lines.append("  none yet")
        return "\n".join(lines)
    table = pd.DataFrame(
        [
            {
                "id": v.id,
                "type": v.model_type,
                "status": v.status,
                "as_of": v.as_of.isoformat(),
                "rows": v.rows,
            }
            for v in versions
        ]
    )
    lines.append(table.to_string(index=False))

    current_user = publisher.current(site.name, "user")
    latest = lake.days(site.name, names.USER_RECOMMENDATIONS)
    if current_user is not None and latest:
        recs = lake.read_partition(site.name, names.USER_RECOMMENDATIONS, latest[-1])
        if recs is not None and not recs.empty:
            users = sorted(recs["user_id"].unique())[:sample_users]
            lines += [
                "",
                f"A sample of published user recommendations "
                f"(as of {current_user.as_of:%Y-%m-%d %H:%M} UTC):",
            ]
            for user in users:
                served = publisher.recommendations(site.name, "user", user, size=5)
                lines.append(f"  {user}: {', '.join(served['article_id'].astype(str))}")
    popular = publisher.recommendations(site.name, "popular", "default", size=5)
    if not popular.empty:
        lines += ["", "Default (popular) list: " + ", ".join(popular["article_id"].astype(str))]
    return "\n".join(lines)
