"""Where things live, from the environment, with the embedded default when unset.

- ``RECS_HOME``: folder for everything local (default ``./var``).
- ``RECS_LAKE_URL``: the Parquet lake (default ``$RECS_HOME/lake``).
- ``RECS_DATABASE_URL``: the serving database (default ``sqlite:///$RECS_HOME/recs.sqlite``).
- ``RECS_SITES_DIR``: the folder of site YAML files (default ``sites/`` of this project).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    return Path(os.environ.get("RECS_HOME", "var")).expanduser().absolute()


def lake_url() -> str:
    return os.environ.get("RECS_LAKE_URL") or str(home() / "lake")


def database_url() -> str:
    return os.environ.get("RECS_DATABASE_URL") or f"sqlite:///{home() / 'recs.sqlite'}"


def sites_dir() -> Path:
    configured = os.environ.get("RECS_SITES_DIR")
    return Path(configured).expanduser() if configured else PROJECT_ROOT / "sites"
