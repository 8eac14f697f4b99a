"""What the UI shows of every asset: owners, tags, and the published lists' freshness policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from recs_pipeline.definitions import build_definitions
from recs_pipeline_tests.conftest import site_config


def test_assets_carry_owners_tags_and_the_publish_freshness_policy(tmp_path: Path) -> None:
    site = site_config("news", tmp_path)
    site = site.model_copy(
        update={
            "owners": ["team:newsroom-data"],
            "publish": site.publish.model_copy(
                update={"freshness_warn_hours": 2.0, "freshness_fail_hours": 5.0}
            ),
        }
    )
    definitions = build_definitions([site], str(tmp_path / "lake"), "sqlite:///x.sqlite")
    specs = {
        spec.key.path[-1]: spec
        for assets in definitions.assets or []
        if isinstance(assets, dg.AssetsDefinition)
        for spec in assets.specs
    }
    assert {"raw_events", "user_recommendations", "published_recommendations"} <= set(specs)
    for name, spec in specs.items():
        assert spec.owners == ["team:newsroom-data"], name
        assert spec.tags["site"] == "news", name
    assert specs["raw_events"].tags["stage"] == "ingestion"
    assert specs["ranker_model"].tags["stage"] == "ranking"
    assert specs["published_recommendations"].tags["stage"] == "serving"
    # Steps that talk to the serving database (or a CMS) retry with back-off; jobs' runs retry.
    publish = next(
        assets
        for assets in definitions.assets or []
        if isinstance(assets, dg.AssetsDefinition)
        and dg.AssetKey(["news", "published_recommendations"]) in assets.keys
    )
    retry = publish.op.retry_policy
    assert retry is not None and retry.max_retries == 3
    jobs = {job.name: job for job in definitions.jobs or []}
    assert jobs["news__refresh"].tags["dagster/max_retries"] == "2"  # type: ignore[union-attr]
    policy = specs["published_recommendations"].freshness_policy
    assert isinstance(policy, dg.FreshnessPolicy)
    assert policy.fail_window.to_timedelta() == dt.timedelta(hours=5)  # type: ignore[attr-defined]
    assert policy.warn_window.to_timedelta() == dt.timedelta(hours=2)  # type: ignore[attr-defined]


def test_loading_the_code_location_silences_no_warning_process_wide() -> None:
    import subprocess
    import sys

    program = (
        "import warnings, dagster as dg\n"
        "import recs_pipeline.definitions\n"
        "ignored = [f for f in warnings.filters if f[0] == 'ignore'"
        " and f[2] in (dg.BetaWarning, dg.PreviewWarning)]\n"
        "raise SystemExit(1 if ignored else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_cli_option_has_help_text() -> None:
    import argparse

    from recs_pipeline.cli import build_parser

    parser = build_parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    missing = [
        f"recs {name} {action.option_strings or action.dest}"
        for name, command in commands.choices.items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert not missing, missing
    assert len(commands.choices) >= 6
