"""Wall time and peak memory of the whole graph on a generated site.

    python benchmarks/whole_graph.py --events 10000000 --days 10 --users 300000

Generates the landing files (deterministic), writes a site file for them, then materialises every
asset of that site for the whole date range in one run through `dagster asset materialize`, the
command a user types for a backfill. Peak memory is the child process's maximum resident set
(getrusage), wall time is measured around each step. Results print as a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from recs_pipeline.core.synthetic import GeneratorConfig, generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="valid events in total")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--articles-per-day", type=int, default=200)
    parser.add_argument("--start", default="2026-10-01")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench"))
    parser.add_argument("--reuse", action="store_true", help="keep landing files of a prior run")
    args = parser.parse_args()

    work: Path = args.workdir.absolute()
    landing = work / "landing"
    start = dt.date.fromisoformat(args.start)
    end = start + dt.timedelta(days=args.days - 1)
    rows: list[tuple[str, float, float | None]] = []

    if not (args.reuse and (landing / "_manifest.json").exists()):
        shutil.rmtree(work, ignore_errors=True)
        began = time.perf_counter()
        generate(
            GeneratorConfig(
                start=start,
                days=args.days,
                users=args.users,
                articles_per_day=args.articles_per_day,
                events_per_day=args.events // args.days,
            ),
            landing,
            progress=True,
        )
        rows.append(("generate landing files", time.perf_counter() - began, None))
    manifest = json.loads((landing / "_manifest.json").read_text())["stats"]

    for stale in ("lake", "recs.sqlite", "dagster_home"):
        shutil.rmtree(work / stale, ignore_errors=True) if (work / stale).is_dir() else (
            (work / stale).unlink(missing_ok=True)
        )
    sites = work / "sites"
    sites.mkdir(parents=True, exist_ok=True)
    (sites / "bench.yaml").write_text(
        json.dumps(
            {
                "name": "bench",
                "timezone": "America/Sao_Paulo",
                "start_date": start.isoformat(),
                "events": {"format": "snowplow", "location": str(landing)},
            }
        )
    )
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "RECS_SITES_DIR": str(sites),
        "RECS_LAKE_URL": str(work / "lake"),
        "RECS_DATABASE_URL": f"sqlite:///{work / 'recs.sqlite'}",
        "DAGSTER_HOME": str(home),
        "OPENBLAS_NUM_THREADS": "1",
    }
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "recs_pipeline.definitions",
        "--select",
        "group:bench",
        "--partition-range",
        f"{start.isoformat()}...{end.isoformat()}",
    ]
    began = time.perf_counter()
    log = work / "materialize.log"
    with log.open("w") as handle:
        completed = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if completed.returncode != 0:
        print(f"materialize failed, see {log}", file=sys.stderr)
        return 1
    rows.append((f"materialise whole graph, {args.days} days", wall, peak_mib))

    print(
        f"\n{manifest['lines']:,} landing lines, {manifest['valid_events']:,} valid events, "
        f"{args.days} days, {manifest['users']:,} users\n"
    )
    print("| step | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.1f} | {'' if peak is None else f'{peak:.0f}'} |")
    print(f"\nevents per second through the whole graph: {manifest['valid_events'] / wall:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
