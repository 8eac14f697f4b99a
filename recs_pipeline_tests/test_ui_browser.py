"""The Dagster UI shows what the pipeline did: headless Chromium against a real webserver.

A small generated site (``demo``) is materialised over a range of days in one run, into an
instance on disk (``DAGSTER_HOME`` in a temporary folder); a second site (``news``) is defined but
never run. ``dagster-webserver`` serves that instance and the project's code location
(``-m recs_pipeline.definitions``, sites from ``RECS_SITES_DIR``), and Debian's chromium, driven by
Playwright, checks:

- the asset graph has one group per site, and the demo group's lineage has its assets;
- the gate's checks show their real status (passed, as recorded in the instance, not failed) and
  each day of the range has its own check evaluation;
- the asset page plots metadata per partition: raw_events' row counts over the days, equal to the
  rows in the lake.

Screenshots go to the test's temporary folder; with ``RECS_UPDATE_SCREENSHOTS=1`` they are also
copied into ``docs/`` (``docs/asset-graph.png`` is the README's picture). Without chromium the
tests skip and say how to get it; with ``RECS_REQUIRE_BROWSER=1`` (CI) a missing browser fails.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from recs_pipeline.adapters.lake import Lake, lake_from_url
from recs_pipeline.core.site import SiteConfig
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline.definitions import build_definitions
from recs_pipeline_tests.conftest import FIRST_DAY, site_config
from recs_pipeline_tests.servers import free_port
from recs_pipeline_tests.ui.browser import (
    DISMISS_COMMUNITY_DIALOG,
    PLOT_VALUES_JS,
    launch,
    require_chromium,
)
from recs_pipeline_tests.ui.webserver import PROJECT, Webserver

DAYS = 3
SITE = "demo"
UNRUN_SITE = "news"
LOCATION = "recs_pipeline.definitions"  # the code location's name with `-m MODULE`
# What the demo group's lineage must show (the graph may grow; these are the spine of it).
SPINE = [
    "raw_events",
    "quarantined_events",
    "pages",
    "engagement",
    "interactions",
    "als_model",
    "similar_articles",
    "popular_articles",
    "ranker_model",
    "recommendation_evaluation",
    "user_recommendations",
    "published_recommendations",
]
GATED = "user_recommendations"
GRAPH_VIEWPORT = {"width": 2400, "height": 1600}  # wide enough for Dagster's detailed nodes
PAGE_VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 30_000

# One materialised site and one webserver for the module: with `-n N --dist loadgroup` its tests
# stay on one worker (plain `--dist load` may split them and build the site twice).
pytestmark = pytest.mark.xdist_group("ui_browser")


@dataclass
class UISite:
    url: str
    days: list[str]
    lake: Lake
    # check name -> partition (None: the run-level result) -> passed, as the instance recorded
    evaluations: dict[dg.AssetCheckKey, dict[str | None, bool]]
    shots: Path

    def checks_of(self, asset: str) -> dict[str, dict[str | None, bool]]:
        return {
            key.name: by_partition
            for key, by_partition in self.evaluations.items()
            if key.asset_key == dg.AssetKey([SITE, asset])
        }


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()  # first, so a machine without a browser skips before any work


def _materialise(site: SiteConfig, home: Path, dagster_home: Path, days: list[str]) -> Any:
    """The whole graph over the days in one run, like a single-run backfill, into the instance."""
    definitions = build_definitions([site], str(home / "lake"), f"sqlite:///{home / 'recs.sqlite'}")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = definitions.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[-1],
            },
            raise_on_error=False,
        )
    assert result.success, "materialising the demo site's range failed"
    return result


@pytest.fixture(scope="module")
def ui(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UISite]:
    started = time.monotonic()
    root = tmp_path_factory.mktemp("ui")
    home, sites, shots = root / "home", root / "sites", root / "screenshots"
    dagster_home = home / "dagster_home"
    for folder in (sites, shots, dagster_home, home / "landing" / UNRUN_SITE):
        folder.mkdir(parents=True)
    shutil.copy(PROJECT / "dagster.yaml", dagster_home / "dagster.yaml")
    days = [(FIRST_DAY + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    generate(
        GeneratorConfig(
            start=FIRST_DAY,
            days=DAYS,
            users=400,
            articles_per_day=30,
            events_per_day=6_000,
            seed=11,
        ),
        home / "landing" / SITE,
    )
    site = site_config(SITE, home / "landing" / SITE)
    unrun = site_config(UNRUN_SITE, home / "landing" / UNRUN_SITE)
    for config in (site, unrun):
        (sites / f"{config.name}.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {
        **os.environ,
        "RECS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "RECS_SITES_DIR": str(sites),
        "RECS_LAKE_URL": str(home / "lake"),
        "RECS_DATABASE_URL": f"sqlite:///{home / 'recs.sqlite'}",
        "OPENBLAS_NUM_THREADS": "1",
    }
    server = Webserver(env, free_port(), root / "webserver.log")
    # The webserver starts (imports, code server) while the range materialises in this process.
    server.start()
    try:
        materialise_started = time.monotonic()
        result = _materialise(site, home, dagster_home, days)
        materialised = time.monotonic() - materialise_started
        evaluations: dict[dg.AssetCheckKey, dict[str | None, bool]] = {}
        for evaluation in result.get_asset_check_evaluations():
            evaluations.setdefault(evaluation.asset_check_key, {})[evaluation.partition] = (
                evaluation.passed
            )
        server.wait_ready()
        ready = time.monotonic() - started
        yield UISite(
            server.url,
            days,
            lake_from_url(str(home / "lake")),
            evaluations,
            shots,
        )
    finally:
        server.stop()
    print(
        f"\nUI test: {time.monotonic() - started:.1f} s in all, {ready:.1f} s to a served instance "
        f"({materialised:.1f} s materialising); screenshots in {shots}"
    )


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = launch(playwright, chromium)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, ui: UISite) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PAGE_VIEWPORT, base_url=ui.url)
    context.add_init_script(DISMISS_COMMUNITY_DIALOG)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)  # assertions wait too (5 s by default): shared cores
    tab = context.new_page()
    yield tab
    context.close()


def _screenshot(page: Any, ui: UISite, name: str) -> Path:
    path = ui.shots / name
    page.screenshot(path=str(path))
    if os.environ.get("RECS_UPDATE_SCREENSHOTS") == "1":
        (PROJECT / "docs").mkdir(exist_ok=True)
        shutil.copy(path, PROJECT / "docs" / name)
    return path


def test_the_asset_graph_has_a_group_per_site(ui: UISite, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/asset-groups")
    graph = page.locator("[data-svg-viewport]")
    # Several sites: the global lineage starts with one collapsed box per group.
    for group in (SITE, UNRUN_SITE):
        expect(graph.get_by_text(group, exact=True)).to_be_visible()
    expect(page.get_by_text("Join the Dagster community")).to_have_count(0)

    page.set_viewport_size(GRAPH_VIEWPORT)
    page.goto(f"/locations/{LOCATION}/asset-groups/{SITE}/lineage")
    graph = page.locator("[data-svg-viewport]")
    for name in SPINE:
        expect(graph.get_by_text(name, exact=True)).to_be_visible()
    # Detailed nodes, with the latest statuses: the gated asset's check summary has arrived.
    gate = ui.checks_of(GATED)
    expect(graph.get_by_text(f"{len(gate)} / {len(gate)} Passed")).to_be_visible()
    _screenshot(page, ui, "asset-graph.png")


def test_the_gate_checks_show_their_real_status(ui: UISite, page: Any) -> None:
    from playwright.sync_api import expect

    gate = ui.checks_of(GATED)
    assert len(gate) >= 4, f"the gate's checks are missing from the run: {sorted(gate)}"
    assert all(by_partition[None] for by_partition in gate.values()), (
        f"the gate did not pass on the test site, so the UI cannot be shown a passing gate: {gate}"
    )
    page.goto(f"/assets/{SITE}/{GATED}?view=checks")
    expect(page.get_by_text(f"Checks ({len(gate)})")).to_be_visible()
    for name, by_partition in gate.items():
        row = page.locator(f'[title="{name}"]').locator("xpath=..")
        expect(row).to_contain_text("Succeeded" if by_partition[None] else "Failed")
        expect(row).not_to_contain_text("Failed" if by_partition[None] else "Succeeded")

    check = "served_beats_best_baseline"
    page.goto(f"/assets/{SITE}/{GATED}?view=checks&checkDetail={check}")
    expect(page.get_by_text("Evaluation result").first).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    page.get_by_text("Execution history", exact=True).click()
    # One evaluation per day of the range, each with its own verdict.
    for day in ui.days:
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=day, exact=True))
        expect(row).to_have_count(1)
        expect(row.get_by_role("cell").first).to_have_text(
            "Passed" if gate[check][day] else "Failed"
        )
    _screenshot(page, ui, "asset-checks.png")


def test_the_gate_checks_partitions_tab_counts_the_passing_days(ui: UISite, page: Any) -> None:
    from playwright.sync_api import expect

    gate = ui.checks_of(GATED)
    check = "served_beats_best_baseline"
    passed = sum(1 for day in ui.days if gate[check][day])
    assert passed == len(ui.days), f"the test site's gate failed some days: {gate[check]}"
    page.goto(f"/assets/{SITE}/{GATED}?view=checks&checkDetail={check}")
    counter = page.get_by_text(re.compile(r"^Passed \(\d+\)$"))
    try:
        expect(page.get_by_text("Execution history", exact=True)).to_be_visible()
        # The check's own tabs come after the asset's: its Partitions tab is the last one.
        page.get_by_role("tab", name="Partitions").last.click()
        expect(page.get_by_text(re.compile(r"^Missing \(\d+\)$"))).to_be_visible()
        expect(counter).to_be_visible()  # the tab has loaded its counts
    except AssertionError as error:
        pytest.fail(f"the check's Partitions tab did not load: {error}")
    expect(counter).to_have_text(f"Passed ({passed})", timeout=5_000)


def _plots(page: Any, asset: str, titles: list[str]) -> dict[str, dict[str, float]]:
    """The values of an asset page's metadata plots, per partition (the Plots view's default)."""
    from playwright.sync_api import expect

    page.goto(f"/assets/{SITE}/{asset}")
    page.get_by_role("button", name="Plots").click()
    # Plotted over partitions, not over materialisation events.
    expect(page.get_by_role("button", name="Partitions")).to_have_attribute("aria-selected", "true")
    plots: dict[str, dict[str, float]] = {}
    for name in titles:
        title = page.get_by_text(name, exact=True)
        expect(title).to_be_visible()
        canvas = title.locator("xpath=../..").locator("canvas")
        expect(canvas).to_have_count(1)
        plotted = canvas.evaluate(PLOT_VALUES_JS)
        assert plotted is not None, f"no plot data behind the {name} chart"
        assert plotted["xAxis"] == "partition", f"{name} is plotted over {plotted['xAxis']}"
        plots[name] = {day: value for day, value in plotted["values"] if value is not None}
    return plots


def _per_day(ui: UISite, column: str, measure: str) -> dict[str, int]:
    numbers = {}
    for day in ui.days:
        frame = ui.lake.read_partition(SITE, "raw_events", day, columns=[column])
        assert frame is not None, f"raw_events {day} is not in the lake"
        numbers[day] = len(frame) if measure == "rows" else int(frame[column].nunique())
    return numbers


def test_the_asset_page_plots_row_counts_per_partition(ui: UISite, page: Any) -> None:
    plots = _plots(page, "raw_events", ["dagster/row_count", "events"])
    rows = _per_day(ui, "event_id", "rows")
    for name, values in plots.items():
        assert values == rows, f"{name} plots {values}, the lake holds {rows} rows"
    assert len(set(rows.values())) > 1, "every day has as many rows: the plot cannot tell"
    _screenshot(page, ui, "asset-page.png")


def test_the_asset_page_plots_each_days_distinct_articles_and_users(ui: UISite, page: Any) -> None:
    try:
        plots = _plots(page, "raw_events", ["articles", "users"])
    except AssertionError as error:
        pytest.fail(f"the plots did not load: {error}")
    assert plots == {
        "articles": _per_day(ui, "article_id", "distinct"),
        "users": _per_day(ui, "user_id", "distinct"),
    }
