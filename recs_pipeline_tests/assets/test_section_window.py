"""Article sections for the ranker's category features: a trailing window of pages partitions."""

from pathlib import Path

import pandas as pd
import pytest

from recs_pipeline.adapters.lake import Lake, lake_from_url
from recs_pipeline.adapters.lake_windows import SectionWindow, article_sections
from recs_pipeline.core.site import SiteConfig, load_site

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site() -> SiteConfig:
    return load_site(PROJECT / "sites" / "demo.yaml")


def pages(day: str, sections: dict[str, str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {"date": day, "article_id": list(sections), "section": list(sections.values())}
    )


class CountingLake:
    """The real lake, counting the partitions read."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.reads: list[str] = []

    def days(self, site: str, asset: str) -> list[str]:
        return self.lake.days(site, asset)

    def read_partition(self, site: str, asset: str, day: str) -> pd.DataFrame | None:
        self.reads.append(day)
        return self.lake.read_partition(site, asset, day)


def test_window_matches_a_fresh_read_and_reads_each_partition_once(
    tmp_path: Path, site: SiteConfig
) -> None:
    lake = lake_from_url(str(tmp_path / "lake"))
    lake.write_partition(site.name, "pages", DAYS[0], pages(DAYS[0], {"a": "sport", "b": None}))
    lake.write_partition(site.name, "pages", DAYS[1], pages(DAYS[1], {"a": "politics"}))
    lake.write_partition(site.name, "pages", DAYS[2], pages(DAYS[2], {"c": "culture"}))
    lake.write_partition(site.name, "pages", DAYS[3], pages(DAYS[3], {"d": None}))
    counting = CountingLake(lake)
    window = SectionWindow(counting, site, 2)  # type: ignore[arg-type]

    for index, day in enumerate(DAYS):
        fresh = article_sections(lake, site, DAYS[max(0, index - 1) : index + 1])
        got = window.sections(day)
        if fresh is None:
            assert got is None
        else:
            assert got is not None
            pd.testing.assert_series_equal(got.sort_index(), fresh.sort_index())
    assert counting.reads == DAYS

    # The later day's section wins; an article without one is left out.
    second = window.sections(DAYS[1])
    assert second is not None and second.to_dict() == {"a": "politics"}


def test_pages_without_sections_give_none(tmp_path: Path, site: SiteConfig) -> None:
    lake = lake_from_url(str(tmp_path / "lake"))
    lake.write_partition(
        site.name, "pages", DAYS[0], pd.DataFrame({"date": DAYS[0], "article_id": ["a"]})
    )
    assert SectionWindow(lake, site, 3).sections(DAYS[0]) is None
    assert article_sections(lake, site, DAYS[:1]) is None
