"""The page registry: what the site's CMS said about each page path, asked once per path.

One row per canonical path: the article id, the CMS's id, why the page is not an article (when
the CMS says so), title, excerpt, publish and modified times, section, tags and whether the article
is the newsroom's own. The rules of the systems this replaces:

* **Fetch** a path when it is new, when its publish date is still unknown, or when it was
  published within the last day (titles and excerpts still change then). A path the CMS
  excluded is not asked again. ``force`` asks again for every path (backfills).
* **Upsert** a fetched article only when the CMS's modified time is newer than the stored one
  (or either is unknown); ``force`` overwrites.

Plain pandas; the adapters fetch and store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Columns of the registry (and of a fetcher's results, plus ``status``).
REGISTRY_COLUMNS = (
    "path",
    "article_id",
    "external_id",
    "exclude_reason",
    "title",
    "description",
    "published_at",
    "modified_at",
    "section",
    "tags",
    "in_house",
    "fetched_at",
)
_TIMES = ("published_at", "modified_at", "fetched_at")
_STRINGS = ("path", "article_id", "external_id", "exclude_reason", "title", "description")


def empty_registry() -> pd.DataFrame:
    return normalise(pd.DataFrame({name: [] for name in REGISTRY_COLUMNS}))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Registry dtypes: strings, UTC timestamps, nullable booleans."""
    out = frame.copy()
    for name in REGISTRY_COLUMNS:
        if name not in out:
            out[name] = None
    for name in (*_STRINGS, "section", "tags"):
        out[name] = out[name].astype("string")
    for name in _TIMES:
        out[name] = pd.to_datetime(out[name], utc=True, errors="coerce").astype(
            "datetime64[ms, UTC]"
        )
    out["in_house"] = out["in_house"].astype("boolean")
    return out[list(REGISTRY_COLUMNS)].reset_index(drop=True)


def due_for_fetch(
    registry: pd.DataFrame,
    pages: pd.DataFrame,
    now: pd.Timestamp,
    recent_hours: float = 24.0,
    force: bool = False,
) -> pd.DataFrame:
    """The ``(path, article_id)`` rows of ``pages`` the CMS should be asked about now.

    New paths first, then known ones without a publish date, then recent ones; within each the
    order of ``pages`` (callers pass the most read first).
    """
    candidates = pages[["path", "article_id"]].dropna(subset=["path"]).drop_duplicates("path")
    if force:
        return candidates.reset_index(drop=True)
    known = registry.set_index("path")
    present = candidates["path"].isin(known.index)
    new = candidates.loc[~present]
    old = candidates.loc[present]
    rows = known.loc[old["path"]]
    excluded = rows["exclude_reason"].notna().to_numpy()
    undated = rows["published_at"].isna().to_numpy() & ~excluded
    recent = (rows["published_at"] >= now - pd.Timedelta(hours=recent_hours)).fillna(
        False
    ).to_numpy() & ~excluded
    return pd.concat([new, old.loc[undated], old.loc[recent & ~undated]]).reset_index(drop=True)


@dataclass
class MergeCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    excluded: int = 0
    failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, int]:
        return {
            "pages_created": self.created,
            "pages_updated": self.updated,
            "pages_unchanged": self.unchanged,
            "pages_excluded": self.excluded,
            "pages_failed": self.failed,
        }


def merge(
    registry: pd.DataFrame, fetched: pd.DataFrame, force: bool = False
) -> tuple[pd.DataFrame, MergeCounts]:
    """The registry after a fetch; ``fetched`` has the registry's columns plus ``status``.

    ``status`` is ``ok`` (an article), ``excluded`` (the CMS says it is no article, with the
    reason) or ``failed`` (no answer: nothing is stored, so the next run asks again).
    """
    counts = MergeCounts()
    if fetched.empty:
        return registry, counts
    counts.failed = int((fetched["status"] == "failed").sum())
    answered = normalise(fetched.loc[fetched["status"] != "failed"])
    current = registry.set_index("path")
    is_new = ~answered["path"].isin(current.index)
    old = answered.loc[~is_new]
    stored_modified = current.loc[old["path"], "modified_at"].to_numpy()
    newer = (
        force
        | pd.isna(stored_modified)
        | old["modified_at"].isna().to_numpy()
        | (old["modified_at"].to_numpy() > stored_modified)
    )
    excluded = answered["exclude_reason"].notna()
    counts.excluded = int(excluded.sum())
    counts.created = int((is_new & ~excluded).sum())
    counts.updated = int((newer & ~excluded.loc[~is_new].to_numpy()).sum())
    counts.unchanged = int((~newer).sum())
    replace = pd.concat([answered.loc[is_new], old.loc[newer]])
    kept = registry.loc[~registry["path"].isin(replace["path"])]
    merged = pd.concat([kept, replace], ignore_index=True).sort_values("path", kind="stable")
    return normalise(merged), counts


def metadata_for_pages(registry: pd.DataFrame, pages: pd.DataFrame) -> pd.DataFrame:
    """``title, published_at, section, in_house`` for each row of ``pages`` (by path, then id)."""
    articles = registry.loc[registry["exclude_reason"].isna()]
    columns = ["title", "published_at", "section", "in_house"]
    by_path = articles.set_index("path")[columns]
    by_id = (
        articles.dropna(subset=["article_id"])
        .sort_values("published_at", na_position="first")
        .drop_duplicates("article_id", keep="last")
        .set_index("article_id")[columns]
    )
    found = by_path.reindex(pages["path"].astype("string")).reset_index(drop=True)
    fallback = by_id.reindex(pages["article_id"].astype("string")).reset_index(drop=True)
    out = found.combine_first(fallback)
    out.index = pages.index
    return out
