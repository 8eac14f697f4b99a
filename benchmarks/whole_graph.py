"""Wall time and peak memory of the whole graph on a generated site.

    python benchmarks/whole_graph.py --events 10000000 --days 10 --users 300000

Generates the landing files (deterministic), writes a site file for them, then materialises every
asset of that site (or those of `--select`) for the whole date range in one run through
`dagster asset materialize`, the command a user types for a backfill. Peak memory is the child
process's maximum resident set (getrusage), wall time is measured around each step. The resident
set of the run's processes is also sampled while it runs, and each Dagster step (an asset, or the
multi-asset of ingestion) gets the peak seen between its start and end in the run's log (one
process runs the steps one after another, so memory an earlier step left to the allocator counts
towards the later ones). Results print as Markdown tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
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
    parser.add_argument(
        "--select", default="group:bench", help="assets to materialise (dagster selection syntax)"
    )
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
        args.select,
        "--partition-range",
        f"{start.isoformat()}...{end.isoformat()}",
    ]
    began = time.perf_counter()
    log = work / "materialize.log"
    samples: list[tuple[float, float]] = []
    with log.open("w") as handle:
        child = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        while child.poll() is None:
            samples.append((time.time(), tree_rss_mib(child.pid)))
            time.sleep(0.2)
    wall = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if child.returncode != 0:
        print(f"materialize failed, see {log}", file=sys.stderr)
        return 1
    what = "whole graph" if args.select == "group:bench" else args.select
    rows.append((f"materialise {what}, {args.days} days", wall, peak_mib))

    print(
        f"\n{manifest['lines']:,} landing lines, {manifest['valid_events']:,} valid events, "
        f"{args.days} days, {manifest['users']:,} users\n"
    )
    print("| step | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.1f} | {'' if peak is None else f'{peak:.0f}'} |")
    print(f"\nevents per second through the run: {manifest['valid_events'] / wall:,.0f}")
    print("\n| Dagster step | wall (s) | peak RSS while it ran (MiB) |\n|---|---:|---:|")
    for step, began, ended in step_spans(log):
        inside = [rss for moment, rss in samples if began <= moment < ended + 1]
        print(f"| {step} | {ended - began:.0f} | {max(inside, default=0):.0f} |")
    return 0


def tree_rss_mib(root: int) -> float:
    """Resident memory of a process and its descendants now (Linux /proc), in MiB."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total_kib = 0
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total_kib += int(found.group(1)) if found else 0
    return total_kib / 1024


STEP_EVENT = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}) - .* - (\S+) - "
    r"(STEP_START|STEP_SUCCESS|STEP_FAILURE) - "
)


def step_spans(log: Path) -> list[tuple[str, float, float]]:
    """(step, start, end) in epoch seconds from the run's log, in start order."""
    starts: dict[str, float] = {}
    spans = []
    for line in log.read_text(errors="replace").splitlines():
        found = STEP_EVENT.match(line)
        if found is None:
            continue
        moment = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S %z").timestamp()
        if found.group(3) == "STEP_START":
            starts[found.group(2)] = moment
        elif found.group(2) in starts:
            spans.append((found.group(2), starts.pop(found.group(2)), moment))
    return sorted(spans, key=lambda span: span[1])


if __name__ == "__main__":
    raise SystemExit(main())
