"""``recs serve --workers N``: N uvicorn worker processes on one port sharing live state in Redis,
and the refusal to run several workers with live state in process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recs_pipeline.adapters.publishing import SqlitePublisher
from recs_pipeline.serving.replay import wait_ready
from recs_pipeline_tests.servers import delete_redis_keys, free_port
from recs_pipeline_tests.serving.conftest import AS_OF, SITE, click, publish_version

REDIS_URL = "redis://127.0.0.1:6379/0"
SERVE = [sys.executable, "-m", "recs_pipeline.cli", "serve"]

SITE_YAML = f"""name: {SITE}
start_date: 2026-11-01
events:
  format: snowplow
  location: /nonexistent
  hosts: [news.example.com]
serving:
  warm_hours: 0
"""


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a `recs serve` subprocess: one site, one published version, a Redis
    key prefix of its own (deleted afterwards)."""
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / f"{SITE}.yaml").write_text(SITE_YAML)
    publish_version(SqlitePublisher(tmp_path / "recs.sqlite"), AS_OF)
    prefix = f"recs_test:{uuid.uuid4().hex}:"
    env = dict(
        os.environ,
        RECS_SITES_DIR=str(sites),
        RECS_DATABASE_URL=f"sqlite:///{tmp_path / 'recs.sqlite'}",
        RECS_LIVE_URL=REDIS_URL,
        RECS_LIVE_PREFIX=prefix,
    )
    yield env
    delete_redis_keys(REDIS_URL, prefix)


def workers_of(pid: int) -> list[int]:
    """The uvicorn workers (multiprocessing-spawned children) of process ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in cmdline:
            found.append(int(child))
    return found


def test_workers_share_one_port_and_live_state(serve_env: dict[str, str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*SERVE, "--port", str(port), "--no-warm", "--workers", "2"],
        env=serve_env,
    )
    try:
        deadline = time.monotonic() + 90
        wait_ready(server, url, deadline)
        # Both workers up (each answers /readyz only once its app has started).
        while len(workers_of(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers_of(server.pid)) == 2
        events = [
            click("a", "x", 0),
            click("b", "x", 1),
            click("b", "y", 2),
            click("c", "z", 2),
            click("d", "z", 2),
        ]
        # One event per request, each on a new connection: the kernel spreads them over both
        # workers; every answer, from either worker, sees all of them (one state in Redis).
        for event in events:
            response = httpx.post(f"{url}/v1/sites/{SITE}/events", json=[event], timeout=10)
            assert response.json()["accepted"] == 1
        for _ in range(8):
            items = httpx.get(
                f"{url}/v1/sites/{SITE}/recommendations",
                params={"user_id": "a", "k": 3},
                timeout=10,
            ).json()["items"]
            assert [(i["article_id"], i["source"]) for i in items] == [
                ("y", "session"),
                ("z", "live"),
                ("pop1", "popular"),
            ]
    finally:
        workers = workers_of(server.pid) if server.poll() is None else []
        server.terminate()
        server.wait(timeout=30)
    # The workers stop with their parent.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_workers_need_redis(serve_env: dict[str, str]) -> None:
    env = dict(serve_env)
    env.pop("RECS_LIVE_URL")
    done = subprocess.run(
        [*SERVE, "--port", str(free_port()), "--no-warm", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "RECS_LIVE_URL" in done.stderr
