"""Issue 12, item 10: a publisher that stops while it holds its site's publish lock (SIGSTOP, a
hung process) blocks the site's publishes only until the server notices it idle, and a publish
that waits for the lock says who holds it. Tested with a real stopped process."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.adapters.publishing import PostgresPublisher, RecommendationBatch

SITE = "frozen"
IDLE = 3.0

HOLDER = """
import os, signal, sys, time
from recs_pipeline.adapters.publishing import PostgresPublisher
publisher = PostgresPublisher(sys.argv[1], idle_timeout=float(sys.argv[2]))  # the default: 120 s
with publisher._connect() as conn, publisher._site_lock(conn, sys.argv[3]):
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # frozen, lock held, connection open
    time.sleep(3600)
"""


def batch() -> RecommendationBatch:
    return RecommendationBatch(
        "user",
        pd.DataFrame(
            {
                "source_entity_id": ["u1", "u1"],
                "rank": [1, 2],
                "recommended_article_id": ["a1", "a2"],
                "score": np.array([0.9, 0.5]),
            }
        ),
    )


@pytest.fixture
def frozen_holder(pg_url: str) -> Iterator[subprocess.Popen[str]]:
    PostgresPublisher(pg_url)  # migrations first, so the holder only takes the lock
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url, str(IDLE), SITE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_a_frozen_publisher_holds_the_site_only_until_it_is_idle_too_long(
    pg_url: str, frozen_holder: subprocess.Popen[str]
) -> None:
    impatient = PostgresPublisher(pg_url, lock_timeout=0.5)
    with pytest.raises(TimeoutError) as info:
        impatient.publish(SITE, dt.datetime(2026, 11, 10, tzinfo=dt.UTC), [batch()])
    message = str(info.value)
    assert "held by server pid" in message and "recs_pipeline" in message, message

    patient = PostgresPublisher(pg_url, lock_timeout=60)
    started = time.monotonic()
    [version] = patient.publish(SITE, dt.datetime(2026, 11, 10, tzinfo=dt.UTC), [batch()])
    waited = time.monotonic() - started
    assert version.status == "current"
    # Released when the server disconnected the stopped holder (not after the 60 s lock wait).
    assert waited < IDLE + 10, f"waited {waited:.1f}s"
    assert frozen_holder.poll() is None  # the holder is still there, stopped
