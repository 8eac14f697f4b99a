"""Issue 12, item 7: the database password never shows, whatever is wrong with the URL.

libpq quotes the text it fails to parse, password included; these URLs are what people type
(a ``%`` not followed by hex digits, a raw space or ``@`` in the password, a broken IPv6 host, a
port that is not a number). The CLI and a real ``dagster asset materialize`` (run event log,
compute logs, everything under ``DAGSTER_HOME``) are grepped for the password.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from recs_pipeline.adapters.postgres_tables import PostgresTables
from recs_pipeline.adapters.publishing import publisher_from_url, redact_url
from recs_pipeline.adapters.publishing.postgres import libpq_url
from recs_pipeline.core.synthetic import GeneratorConfig, generate

SECRET = "Zq8s3cr"
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]

# Port 1: nothing listens there, so a URL that parses fails to connect.
MALFORMED = {
    "percent": f"postgresql://recs:{SECRET}%zz@127.0.0.1:1/recs",
    "space": f"postgresql://recs:{SECRET} x@127.0.0.1:1/recs",
    "at": f"postgresql://recs:{SECRET}@x@127.0.0.1:1/recs",
    "ipv6": f"postgresql://recs:{SECRET}@[::1:1/recs",
    "port": f"postgresql://recs:{SECRET}@127.0.0.1:1x/recs",
    "query": f"postgresql://recs@127.0.0.1:1/recs?password={SECRET}",
}


def chain(error: BaseException) -> str:
    """An exception's text with every cause and context, as a traceback would show them."""
    seen: list[str] = []
    current: BaseException | None = error
    while current is not None:
        seen.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(seen)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_errors_never_carry_the_password(name: str) -> None:
    url = MALFORMED[name]
    assert SECRET not in redact_url(url)
    with pytest.raises((psycopg.Error, ValueError)) as info:
        publisher_from_url(url)
    assert SECRET not in chain(info.value)
    with pytest.raises((psycopg.Error, ValueError)) as info:
        PostgresTables(url).read_days("s", "a", ["2026-11-01"])
    assert SECRET not in chain(info.value)
    assert SECRET not in repr(info.value)


def test_a_password_with_odd_characters_still_connects(pg_url: str) -> None:
    """The lenient reading is the password as typed: a raw ``@`` or space reaches the server."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE odd LOGIN PASSWORD 'p@ss w%rd'")
    try:
        url = pg_url.replace("postgres@", "odd:p@ss w%rd@", 1)
        assert libpq_url(url).startswith("postgresql://odd:p%40ss%20w%25rd@")
        tables = PostgresTables(url)
        assert tables.read_days("s", "a", ["2026-11-01"]) is None  # connected, no table yet
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP ROLE odd")


def everything_under(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("name", ["percent", "ipv6"])
def test_cli_and_a_materialisation_never_show_the_password(tmp_path: Path, name: str) -> None:
    landing = tmp_path / "landing"
    generate(
        GeneratorConfig(
            start=dt.date(2026, 11, 1),
            days=1,
            users=60,
            articles_per_day=8,
            events_per_day=400,
            malformed_share=0.0,
            seed=4,
        ),
        landing,
    )
    sites = tmp_path / "sites"
    sites.mkdir()
    site = {
        "name": "leak",
        "timezone": "America/Sao_Paulo",
        "start_date": "2026-11-01",
        "events": {"format": "snowplow", "location": str(landing)},
        "models": {"popular": {"window_days": 1}},
    }
    (sites / "leak.yaml").write_text(yaml.safe_dump(site))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "RECS_HOME": str(tmp_path / "var"),
        "RECS_SITES_DIR": str(sites),
        "RECS_DATABASE_URL": MALFORMED[name],
        "DAGSTER_HOME": str(home),
    }
    env.pop("RECS_LAKE_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            args, env=env, cwd=tmp_path, capture_output=True, timeout=300, check=False
        )

    summary = run(str(BIN / "recs"), "summary", "--site", "leak")
    assert summary.returncode != 0
    materialise = run(
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "recs_pipeline.definitions",
        "--select",
        "leak/raw_events,leak/quarantined_events,leak/engagement,leak/popular_articles",
        "--partition",
        "2026-11-01",
    )
    # The mirror of popular_articles cannot reach the database: the run fails, saying why.
    assert materialise.returncode != 0
    logs = everything_under(home)
    assert b"popular_articles" in logs  # the run and its steps were recorded here
    outputs = {
        "recs summary stdout": summary.stdout,
        "recs summary stderr": summary.stderr,
        "dagster stdout": materialise.stdout,
        "dagster stderr": materialise.stderr,
        "DAGSTER_HOME": logs,
    }
    leaked = [where for where, output in outputs.items() if SECRET.encode() in output]
    assert leaked == []
    assert b"postgresql://recs:***@" in logs + materialise.stderr + materialise.stdout
