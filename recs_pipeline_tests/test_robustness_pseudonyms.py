"""Issue 12, item 8: with pseudonymisation, no stored value derived from a raw user id can be
checked without the salt (GA4 rows carry no event id: theirs is derived from the user id)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
from pathlib import Path

import orjson
import pandas as pd
import pytest

from recs_pipeline.adapters.sources import event_source
from recs_pipeline.core.site import SiteConfig

NOW = pd.Timestamp("2026-12-01", tz="UTC")
DAY = dt.date(2026, 11, 10)
SALT = "a-long-secret-salt-for-tests"
MICROS = int(pd.Timestamp("2026-11-10 12:00", tz="UTC").value // 1000)
PAGE = "https://news.example.com/politics/budget-123"


def unkeyed_id(user: str) -> str:
    """The event id a GA4 row got from its raw user id before: anyone can compute it."""
    key = pd.DataFrame(
        {"user_id": [user], "ts": [str(MICROS)], "path": [PAGE], "name": ["page_view"]},
        dtype="string",
    )
    return f"{pd.util.hash_pandas_object(key, index=False).iloc[0]:016x}"


def read(tmp_path: Path, salt_env: str | None) -> pd.DataFrame:
    row = {
        "event_timestamp": str(MICROS),
        "event_name": "page_view",
        "user_pseudo_id": "1234567890.1700000000",
        "event_params": [{"key": "page_location", "value": {"string_value": PAGE}}],
    }
    (tmp_path / "events_20261110.json.gz").write_bytes(gzip.compress(orjson.dumps(row)))
    events: dict[str, object] = {"format": "ga4", "location": str(tmp_path)}
    if salt_env:
        events["pseudonymise_salt_env"] = salt_env
    config = SiteConfig.model_validate(
        {"name": "g", "timezone": "UTC", "start_date": "2026-11-01", "events": events}
    )
    [(_, day)] = list(event_source(config).read_days([DAY], now=NOW))
    return day.events


def test_a_guessed_raw_id_cannot_be_confirmed_from_ga4_event_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = "1234567890.1700000000"
    plain = read(tmp_path, None)
    assert plain["event_id"].tolist() == [unkeyed_id(raw)]  # without a salt: the raw id's hash

    monkeypatch.setenv("TEST_GA4_SALT", SALT)
    hidden = read(tmp_path, "TEST_GA4_SALT")
    pseudonym = hmac.new(SALT.encode(), raw.encode(), hashlib.sha256).hexdigest()[:32]
    assert hidden["user_id"].tolist() == [pseudonym]
    assert unkeyed_id(raw) not in set(hidden["event_id"])
    stored = hidden.astype("string").fillna("").to_numpy().ravel().tolist()
    assert not any(raw in value for value in stored)
    # Keyed: the same salt gives the same id on every run, another salt another id.
    assert read(tmp_path, "TEST_GA4_SALT")["event_id"].tolist() == hidden["event_id"].tolist()
    monkeypatch.setenv("TEST_GA4_SALT", "another-long-secret-salt")
    assert read(tmp_path, "TEST_GA4_SALT")["event_id"].tolist() != hidden["event_id"].tolist()
