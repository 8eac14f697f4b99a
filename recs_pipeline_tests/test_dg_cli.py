"""The ``dg`` CLI works beside the ``dagster`` commands the README names."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg

PROJECT = Path(__file__).resolve().parent.parent
DG = PROJECT / ".venv" / "bin" / "dg"


def _environment(home: Path) -> dict[str, str]:
    (home / "landing" / "demo").mkdir(parents=True)
    (home / "dagster_home").mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    return {
        **os.environ,
        "RECS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "RECS_SITES_DIR": str(PROJECT / "sites"),
    }


def test_dg_checks_the_definitions_and_launches_assets(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    checked = subprocess.run(
        [str(DG), "check", "defs"], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    launched = subprocess.run(
        [
            str(DG),
            "launch",
            "--assets",
            "key:demo/raw_events or key:demo/quarantined_events",
            "--partition",
            "2026-11-01",
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert (tmp_path / "lake" / "demo" / "raw_events" / "date=2026-11-01").is_dir()
