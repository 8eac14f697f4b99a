"""A snapshot of the code location's shape: every asset, check, job, schedule and sensor.

A change to the graph (a new dependency, a renamed check, a schedule's cron) shows in review as
a diff of ``snapshots/definitions.json``. After an intended change, rewrite it with
``RECS_UPDATE_SNAPSHOT=1 .venv/bin/pytest recs_pipeline_tests/test_definitions_snapshot.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from recs_pipeline.core.site import load_sites
from recs_pipeline.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
SITES = Path(__file__).resolve().parent.parent / "sites"


def shape() -> dict[str, Any]:
    definitions = build_definitions(load_sites(SITES), "/tmp/lake", "sqlite:////tmp/x.sqlite")
    graph = definitions.resolve_asset_graph()
    assets = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets.append(
            {
                "key": key.to_user_string(),
                "group": node.group_name,
                "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
                "owners": list(node.owners),
                "tags": {k: v for k, v in sorted(node.tags.items())},
                "partitioned": node.partitions_def is not None,
            }
        )
    checks = sorted(
        (
            {
                "asset": check_key.asset_key.to_user_string(),
                "name": check_key.name,
                "blocking": graph.get(check_key).blocking,
            }
            for check_key in graph.asset_check_keys
        ),
        key=lambda c: (c["asset"], c["name"]),
    )
    repository = definitions.get_repository_def()
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(job.name for job in repository.get_all_jobs()),
        "schedules": sorted(
            f"{s.name} {s.cron_schedule} {s.execution_timezone}" for s in repository.schedule_defs
        ),
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
    }


def test_the_code_location_has_the_recorded_shape() -> None:
    current = shape()
    text = json.dumps(current, indent=1, sort_keys=True) + "\n"
    if os.environ.get("RECS_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(text)
    recorded = json.loads(SNAPSHOT.read_text())
    assert current == recorded, "the graph changed: see the module docstring to update"
    assert len(current["assets"]) >= 20 and current["checks"] and current["sensors"]


def test_a_changed_graph_differs_from_the_snapshot() -> None:
    recorded = json.loads(SNAPSHOT.read_text())
    changed = dict(recorded, jobs=[*recorded["jobs"], "another_job"])
    assert changed != shape()
    assert dg.AssetKey(["demo", "raw_events"]).to_user_string() in {
        asset["key"] for asset in recorded["assets"]
    }
