"""Steps on Celery workers: a generated site's days materialised through ``dagster-celery``.

A real instance in a temporary ``DAGSTER_HOME`` (the project's ``dagster.yaml``), two workers
started as separate processes with ``dagster-celery worker start`` and the worker config of
``deploy/celery/``, and the run launched by ``dagster asset materialize`` on the code location
``recs_pipeline.scaling.celery_defs``, as on a machine apart from the workers'. The broker is the
RabbitMQ on 127.0.0.1:5672 (``RECS_TEST_CELERY_BROKER_URL`` names another), else the test Redis
(``servers.redis_server``: local, or one the tests start), on a queue of the test's own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest
import yaml

from recs_pipeline.adapters.lake import lake_from_url
from recs_pipeline.core.synthetic import GeneratorConfig, generate

PROJECT = Path(__file__).resolve().parent.parent
BIN = PROJECT / ".venv" / "bin"
BROKER_VAR = "RECS_TEST_CELERY_BROKER_URL"
BACKEND_VAR = "RECS_TEST_CELERY_BACKEND_URL"
LOCAL_RABBITMQ = "pyamqp://guest:guest@127.0.0.1:5672//"
# Redis databases of this test (the broker's and the results'), apart from db 0 the others use.
REDIS_BROKER_DB, REDIS_BACKEND_DB = 13, 14

FIRST_DAY = dt.date(2026, 11, 1)
DAYS = [FIRST_DAY.isoformat(), (FIRST_DAY + dt.timedelta(days=1)).isoformat()]
SITE = "celerysite"
# The ingestion and model half of the graph: eight assets (and their data checks) in seven steps
# with dependencies between them, enough for both workers to take steps.
ASSETS = (
    "raw_events",
    "quarantined_events",
    "pages",
    "engagement",
    "interactions",
    "popular_articles",
    "als_model",
    "similar_articles",
)


@dataclass(frozen=True)
class Broker:
    kind: str
    broker_url: str
    backend_url: str


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Broker:
    named = os.environ.get(BROKER_VAR)
    if named:
        return Broker("named", named, os.environ.get(BACKEND_VAR, "rpc://"))
    if _reachable("127.0.0.1", 5672):
        return Broker("rabbitmq", LOCAL_RABBITMQ, "rpc://")
    redis_url: str = request.getfixturevalue("redis_server")
    return Broker(
        "redis", _with_db(redis_url, REDIS_BROKER_DB), _with_db(redis_url, REDIS_BACKEND_DB)
    )


def _write_site(root: Path) -> tuple[Path, Path]:
    landing = root / "landing"
    generate(
        GeneratorConfig(
            start=FIRST_DAY,
            days=len(DAYS),
            users=300,
            articles_per_day=20,
            events_per_day=4_000,
            malformed_share=0.01,
            seed=5,
        ),
        landing,
    )
    sites = root / "sites"
    sites.mkdir()
    document = {
        "name": SITE,
        "timezone": "America/Sao_Paulo",
        "start_date": FIRST_DAY.isoformat(),
        "events": {"format": "snowplow", "location": str(landing)},
        "engagement": {"min_article_readers": 3, "min_user_articles": 2},
        "models": {
            "als": {"factors": 8, "iterations": 5},
            "popular": {"half_life_hours": 24, "window_days": 2},
            "similar": {"recent_days": 1},
        },
    }
    (sites / f"{SITE}.yaml").write_text(yaml.safe_dump(document))
    return sites, landing


def _descendants(roots: set[int]) -> set[int]:
    """``roots`` and every live process below them (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = set(roots)
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in found} - found
        found |= below
        grew = bool(below)
    return found


def _delete_queue(broker: Broker, queue: str) -> None:
    """The test's queue leaves the shared broker with the test."""
    from kombu import Connection

    try:
        with Connection(broker.broker_url, connect_timeout=3) as connection:
            connection.default_channel.queue_delete(queue)
    except Exception:  # best effort: the queue holds nothing once the run is over
        pass
    if broker.broker_url.startswith("redis"):
        # kombu keeps the queue's exchange bindings in keys named after it.
        import redis

        client = redis.Redis.from_url(broker.broker_url)
        for key in client.scan_iter(match=f"_kombu.binding*.{queue}"):
            client.delete(key)


@pytest.fixture
def celery_env(tmp_path: Path, broker: Broker) -> Iterator[dict[str, str]]:
    sites, _landing = _write_site(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    # The instance exists before the workers start (two workers creating the SQLite storage
    # of an empty DAGSTER_HOME at once race on its schema version).
    with dg.DagsterInstance.from_config(str(home)):
        pass
    queue = f"recs-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "RECS_HOME": str(tmp_path),
        "RECS_SITES_DIR": str(sites),
        "RECS_LAKE_URL": str(tmp_path / "lake"),
        "RECS_DATABASE_URL": f"sqlite:///{tmp_path / 'recs.sqlite'}",
        "RECS_CELERY_BROKER_URL": broker.broker_url,
        "RECS_CELERY_BACKEND_URL": broker.backend_url,
        "RECS_CELERY_QUEUE": queue,
        "OPENBLAS_NUM_THREADS": "1",
    }
    yield env
    _delete_queue(broker, queue)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def _start_worker(env: dict[str, str], name: str, log: Path) -> Worker:
    command = [
        str(BIN / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(PROJECT / "deploy" / "celery" / "worker.yaml"),
        "-q",
        env["RECS_CELERY_QUEUE"],
        # Loaded before the pool forks: each task then finds the code location imported.
        "-i",
        "recs_pipeline.scaling.celery_defs",
        "-n",
        name,
        "--",
        "--concurrency",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(f"{name}@{socket.gethostname()}", process, log)


def _wait_until_ready(worker: Worker, timeout: float = 180.0) -> None:
    """Celery logs ``<name> ready.`` once the worker consumes its queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"{worker.name} ready." in worker.log.read_text(errors="replace"):
            return
        assert worker.process.poll() is None, worker.log.read_text(errors="replace")[-4000:]
        time.sleep(0.5)
    raise AssertionError(f"{worker.name} not ready after {timeout} s")


def _stop(worker: Worker) -> None:
    if worker.process.poll() is None:
        os.killpg(worker.process.pid, signal.SIGTERM)
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout=10)


@pytest.fixture
def workers(celery_env: dict[str, str], tmp_path: Path) -> Iterator[list[Worker]]:
    tag = uuid.uuid4().hex[:6]
    started = [
        _start_worker(celery_env, f"recs-{index}-{tag}", tmp_path / f"worker-{index}.log")
        for index in (1, 2)
    ]
    try:
        for worker in started:
            _wait_until_ready(worker)
        yield started
    finally:
        for worker in started:
            _stop(worker)


def broker_kind(env: dict[str, str]) -> str:
    return env["RECS_CELERY_BROKER_URL"].split(":", 1)[0]


def test_a_site_materialised_on_celery_workers(
    celery_env: dict[str, str], workers: list[Worker], tmp_path: Path
) -> None:
    selection = " or ".join(f"key:{SITE}/{asset}" for asset in ASSETS)
    started = time.monotonic()
    launcher = subprocess.Popen(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "recs_pipeline.scaling.celery_defs",
            "--select",
            selection,
            "--partition-range",
            f"{DAYS[0]}...{DAYS[-1]}",
        ],
        cwd=PROJECT,
        env=celery_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = launcher.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        launcher.kill()
        output, _ = launcher.communicate()
    text = output.decode(errors="replace")
    logs = "\n".join(w.log.read_text(errors="replace")[-3000:] for w in workers)
    assert launcher.returncode == 0, text[-4000:] + "\n--- workers ---\n" + logs
    elapsed = time.monotonic() - started

    # Every worker process, with the pool's children, while they still run.
    worker_pids = _descendants({w.process.pid for w in workers})
    assert all(w.process.poll() is None for w in workers), logs

    with dg.DagsterInstance.from_config(celery_env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        run = runs[0]
        assert run.tags["dagster/asset_partition_range_start"] == DAYS[0]
        records = instance.all_logs(run.run_id)
        stamps = {
            r.dagster_event.event_type: r.timestamp
            for r in records
            if r.dagster_event is not None
            and r.dagster_event.event_type
            in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS)
        }
        run_seconds = (
            stamps[dg.DagsterEventType.RUN_SUCCESS] - stamps[dg.DagsterEventType.RUN_START]
        )
        events = [r.dagster_event for r in records if r.dagster_event is not None]
        run_pids = {e.pid for e in events if e.event_type == dg.DagsterEventType.RUN_START}
        assert run_pids == {launcher.pid}
        steps = [e for e in events if e.event_type == dg.DagsterEventType.STEP_SUCCESS]
        step_keys = {e.step_key for e in steps}
        assert len(step_keys) >= 6, step_keys
        assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        # Each step ran in a worker's process, none in the launcher's.
        step_pids = {e.pid for e in steps}
        assert launcher.pid not in step_pids and os.getpid() not in step_pids
        assert step_pids <= worker_pids, (step_pids, worker_pids)
        # The workers say which of them took each step: both did, and only they.
        hostnames = {
            str(e.engine_event_data.metadata["Celery worker"].value)
            for e in events
            if e.event_type == dg.DagsterEventType.ENGINE_EVENT
            and e.engine_event_data is not None
            and "Celery worker" in e.engine_event_data.metadata
        }
        assert hostnames <= {w.name for w in workers}, hostnames
        assert len(hostnames) == 2, hostnames
        materialised = {
            (e.asset_key.to_user_string(), e.partition)
            for e in events
            if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key
        }

    # The outputs: every asset of the selection has both days in the lake, materialised.
    lake = lake_from_url(celery_env["RECS_LAKE_URL"])
    for asset in ASSETS:
        assert lake.days(SITE, asset) == DAYS, asset
    for asset in ASSETS:
        for day in DAYS:
            assert (f"{SITE}/{asset}", day) in materialised, (asset, day)
    raw = lake.read_partitions(SITE, "raw_events", DAYS)
    assert raw is not None and len(raw) > 1_000
    print(
        json.dumps(
            {
                "launch_to_exit_seconds": round(elapsed, 1),
                "run_start_to_success_seconds": round(run_seconds, 1),
                "steps": len(step_keys),
                "broker": broker_kind(celery_env),
            }
        )
    )
