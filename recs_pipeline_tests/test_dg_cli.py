"""The ``dg`` CLI works beside the ``dagster`` commands the README names."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg

from recs_pipeline_tests.servers import free_port

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


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_dg_dev_serves_the_code_location_on_loopback(tmp_path: Path) -> None:
    """``dg dev`` (webserver + daemon) answers on loopback with the project's asset graph."""
    env = _environment(tmp_path)
    port = free_port()
    log = (tmp_path / "dg-dev.log").open("wb")
    process = subprocess.Popen(
        [str(DG), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "dg-dev.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as answer:
                    assert json.load(answer)["dagster_version"]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, (tmp_path / "dg-dev.log").read_text()[-3000:]
                time.sleep(0.5)
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        request = urllib.request.Request(
            f"{url}/graphql", data=query, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            nodes = json.load(answer)["data"]["assetNodes"]
        keys = {"/".join(node["assetKey"]["path"]) for node in nodes}
        assert {"demo/raw_events", "demo/published_recommendations"} <= keys
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
