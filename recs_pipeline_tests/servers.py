"""Real servers for tests: Postgres and an S3 endpoint (moto's server) on loopback.

Postgres comes from, in order: ``RECS_TEST_PG_DSN`` (a libpq URL to a database whose user may
create databases), a server on 127.0.0.1:5432 (user ``postgres``), or a throwaway cluster started
from the local PostgreSQL binaries (``initdb``/``pg_ctl``; as root they run as the ``postgres``
user, since ``initdb`` refuses root). Without any of them the tests fail and say how to get one:
a production-storage test that silently skips proves nothing.

Each test gets a database of its own (``pg_url``), dropped afterwards, and a bucket of its own
(``s3_env``), emptied and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
HOW_TO_GET_POSTGRES = (
    "These tests need a PostgreSQL server. Set "
    "RECS_TEST_PG_DSN=postgresql://user:pass@host:port/db "
    "(a user allowed to CREATE DATABASE), or run one on 127.0.0.1:5432 with user `postgres` "
    "(e.g. `apt-get install postgresql` or `docker run -p 127.0.0.1:5432:5432 -e "
    "POSTGRES_HOST_AUTH_METHOD=trust postgres:16`), or install the PostgreSQL server binaries "
    "(initdb, pg_ctl) so the tests can start a throwaway cluster."
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _pg_binaries() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


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
        as_postgres = os.geteuid() == 0
        user = pwd.getpwnam("postgres") if as_postgres else None

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        subprocess.run(
            args,
            check=True,
            capture_output=True,
            preexec_fn=demote if as_postgres else None,
            timeout=120,
        )

    def start(self) -> None:
        data = self.folder / "data"
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """An admin URL of a Postgres server (see the module docstring for where it comes from)."""
    configured = os.environ.get("RECS_TEST_PG_DSN")
    if configured:
        if not _reachable(configured):
            pytest.fail(f"RECS_TEST_PG_DSN is set but unreachable. {HOW_TO_GET_POSTGRES}")
        yield configured
        return
    if _reachable(LOCAL_DSN):
        yield LOCAL_DSN
        return
    bindir = _pg_binaries()
    if bindir is None:
        pytest.fail(f"no Postgres found. {HOW_TO_GET_POSTGRES}")
    folder = Path(tempfile.mkdtemp(prefix="recs-pg-"))
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
