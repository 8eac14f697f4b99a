"""One run per site on every launch path: the site's concurrency pool, through real CLI runs.

Runs launched with ``dagster asset materialize`` carry no ``recs/site`` tag and bypass the run
queue, so only the pool (a slot per site, ``dagster.yaml``) can keep two of them apart. The test
holds a site's slot itself, launches CLI runs of that site and of another one on the same
instance, and reads the event log: the other site runs while the slot is held, the held site
starts its first step only once the slot is given back; two concurrent runs of one site never
run steps at the same time.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import dagster as dg
from dagster._core.events import DagsterEventType

from recs_pipeline import settings
from recs_pipeline.core.synthetic import GeneratorConfig, generate
from recs_pipeline_tests.conftest import site_config

DAGSTER = Path(sys.executable).parent / "dagster"
INGEST = ("raw_events", "quarantined_events")


def _launch(
    env: dict[str, str], cwd: Path, site: str, day: str, log: IO[str]
) -> subprocess.Popen[str]:
    selection = ",".join(f"{site}/{name}" for name in INGEST)
    return subprocess.Popen(
        [
            str(DAGSTER),
            "asset",
            "materialize",
            "-m",
            "recs_pipeline.definitions",
            "--select",
            selection,
            "--partition",
            day,
        ],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _runs_of(instance: dg.DagsterInstance, site: str) -> list[dg.DagsterRun]:
    wanted = dg.AssetKey([site, "raw_events"])
    return [run for run in instance.get_runs() if wanted in (run.asset_selection or set())]


def _steps(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, float]]:
    """(start, end) of every pooled step of a run (its assets' steps; the read-only checks
    that follow them claim no slot), from its event log."""
    starts: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for entry in instance.all_logs(
        run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    ):
        step = entry.step_key
        assert step is not None
        if not step.endswith("__ingest_events"):
            continue
        if entry.dagster_event_type == DagsterEventType.STEP_START:
            starts[step] = entry.timestamp
        else:
            spans.append((starts[step], entry.timestamp))
    return spans


def _wait_for_run(instance: dg.DagsterInstance, site: str, timeout: float) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in _runs_of(instance, site) if r.status == dg.DagsterRunStatus.STARTED]
        if runs:
            return runs[0]
        time.sleep(0.3)
    raise AssertionError(f"no started run of {site} within {timeout} s")


def test_a_site_pool_serialises_cli_runs_of_one_site_only(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=dt.date(2026, 11, 1),
            days=2,
            users=300,
            articles_per_day=20,
            events_per_day=2000,
            seed=3,
        ),
        landing,
    )
    sites = tmp_path / "sites"
    sites.mkdir()
    for name in ("poola", "poolb"):
        (sites / f"{name}.yaml").write_text(site_config(name, landing).model_dump_json())
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(settings.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "RECS_SITES_DIR": str(sites),
        "RECS_LAKE_URL": str(tmp_path / "lake"),
        "RECS_DATABASE_URL": f"sqlite:///{tmp_path / 'recs.sqlite'}",
        "DAGSTER_HOME": str(home),
    }
    logs = tmp_path / "logs"
    logs.mkdir()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.supports_global_concurrency_limits
        # Someone else holds poola's only slot (a run of poola in progress).
        storage.initialize_concurrency_limit_to_default("site_poola")
        assert storage.get_concurrency_info("site_poola").slot_count == 1
        assert storage.claim_concurrency_slot("site_poola", "holder", "holder_step").is_claimed

        with (logs / "a.log").open("w") as log_a, (logs / "b.log").open("w") as log_b:
            held = _launch(env, tmp_path, "poola", "2026-11-01", log_a)
            other = _launch(env, tmp_path, "poolb", "2026-11-01", log_b)
            try:
                # The other site is not held up by poola's slot.
                assert other.wait(timeout=300) == 0, (logs / "b.log").read_text()[-3000:]
                blocked = _wait_for_run(instance, "poola", timeout=120)
                time.sleep(2.0)  # long past a step's start, had the slot been free
                assert held.poll() is None, (logs / "a.log").read_text()[-3000:]
                assert _steps(instance, blocked.run_id) == []
                assert not instance.all_logs(blocked.run_id, of_type=DagsterEventType.STEP_START)
                freed_at = time.time()
                storage.free_concurrency_slot_for_step("holder", "holder_step")
                assert held.wait(timeout=300) == 0, (logs / "a.log").read_text()[-3000:]
            finally:
                for process in (held, other):
                    if process.poll() is None:
                        process.kill()

        (other_run,) = _runs_of(instance, "poolb")
        other_steps = _steps(instance, other_run.run_id)
        held_steps = _steps(instance, blocked.run_id)
        assert len(other_steps) == 1 and len(held_steps) == 1
        assert other_steps[0][1] < freed_at  # ran to the end while poola's slot was held
        assert held_steps[0][0] >= freed_at  # started only once it was given back
        finished = instance.get_run_by_id(blocked.run_id)
        assert finished is not None and finished.status == dg.DagsterRunStatus.SUCCESS

        # Two runs of one site launched together: their steps never overlap.
        before = {run.run_id for run in _runs_of(instance, "poola")}
        with (logs / "c.log").open("w") as log_c, (logs / "d.log").open("w") as log_d:
            first = _launch(env, tmp_path, "poola", "2026-11-01", log_c)
            second = _launch(env, tmp_path, "poola", "2026-11-02", log_d)
            assert first.wait(timeout=300) == 0, (logs / "c.log").read_text()[-3000:]
            assert second.wait(timeout=300) == 0, (logs / "d.log").read_text()[-3000:]
        runs = [run for run in _runs_of(instance, "poola") if run.run_id not in before]
        assert len(runs) == 2
        spans = [span for run in runs for span in _steps(instance, run.run_id)]
        assert len(spans) == 2
        earlier, later = sorted(spans)
        assert earlier[1] <= later[0], spans
        # Nothing is left claimed once the runs are over.
        assert storage.get_concurrency_info("site_poola").active_slot_count == 0
