"""Ingest throughput and peak memory of every event source on one generated day.

    python benchmarks/ingest_sources.py --events 10000000

Generates one UTC day of synthetic Snowplow landing files (hourly folders, gzipped JSON lines,
with the generator's bots, duplicates and malformed lines), converts its valid events with DuckDB
into the other formats (a GA4 export as gzipped JSON lines and as Parquet, a gzipped delimited
click log, a MIND ``behaviors.tsv`` with one clicked impression per page view), then reads the
day through each source's ``read_days`` (what the ``raw_events`` asset runs) and, in the same
run, scans the same files with a bare DuckDB / pyarrow reader as the floor. Each measurement runs
in its own process; peak memory is that process's maximum resident set (getrusage). Prints a
Markdown table: lines/s of the ingest and of the bare scan, their ratio (ingest ÷ bare, measured
in the same run; medians of ``--repeats``), and peak RSS.

Then small files against one big file: one hour of the day's Snowplow lines and of its click log,
read as one file and as ``--small-files`` files of the same lines (the per-file cost per line).
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
from typing import Any

DAY = dt.date(2026, 10, 5)

SOURCES: dict[str, dict[str, Any]] = {
    "snowplow": {"format": "snowplow", "location": "snowplow"},
    "ga4_json": {"format": "ga4", "location": "ga4_json"},
    "ga4_parquet": {"format": "ga4", "location": "ga4_parquet"},
    "csv": {
        "format": "csv",
        "location": "csv",
        "files": "*.csv.gz",
        "columns": {"user_id": "user_id", "path": "page", "timestamp": "ts_ms"},
        "timestamp_unit": "ms",
    },
    "mind": {"format": "mind", "location": "mind", "mind_history": False},
}


def generate_day(work: Path, events: int, users: int) -> dict[str, Any]:
    from recs_pipeline.core.synthetic import GeneratorConfig, generate

    landing = work / "snowplow"
    if (landing / "_manifest.json").exists():
        manifest = json.loads((landing / "_manifest.json").read_text())
        if manifest["config"]["events_per_day"] == events:
            return dict(manifest["stats"])
    shutil.rmtree(work, ignore_errors=True)
    stats = generate(
        GeneratorConfig(
            start=DAY,
            days=1,
            users=users,
            articles_per_day=300,
            events_per_day=events,
            timezone="UTC",
        ),
        landing,
        progress=True,
    )
    return stats.to_json()


def convert(work: Path) -> None:
    """The other formats from the Snowplow day's valid lines (DuckDB; one file per hour)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    for folder in ("ga4_json", "ga4_parquet", "csv", "mind"):
        shutil.rmtree(work / folder, ignore_errors=True)
        (work / folder).mkdir(parents=True)
    for hour in range(24):
        files = sorted((work / "snowplow").glob(f"*/*/*/{hour:02d}/*.json.gz"))
        if not files:
            continue
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE hour AS
            SELECT * FROM read_json($files, format='newline_delimited', ignore_errors=true,
                columns={event_id: 'VARCHAR', collector_tstamp: 'TIMESTAMP',
                         domain_userid: 'VARCHAR', event_name: 'VARCHAR',
                         page_urlpath: 'VARCHAR', page_url: 'VARCHAR'})
            WHERE event_id IS NOT NULL AND collector_tstamp IS NOT NULL
              AND domain_userid IS NOT NULL AND page_urlpath IS NOT NULL
            """,
            {"files": [str(f) for f in files]},
        )
        ga4 = """
            SELECT epoch_us(collector_tstamp) AS event_timestamp,
                   CASE WHEN event_name = 'page_view' THEN 'page_view'
                        ELSE 'user_engagement' END AS event_name,
                   domain_userid AS user_pseudo_id,
                   [{'key': 'page_location',
                     'value': {'string_value': page_url, 'int_value': NULL::BIGINT}},
                    {'key': 'engagement_time_msec',
                     'value': {'string_value': NULL::VARCHAR,
                               'int_value': CASE WHEN event_name = 'page_ping'
                                                 THEN 10000 ELSE NULL END}}] AS event_params
            FROM hour"""
        for folder in ("ga4_json", "ga4_parquet"):
            (work / folder / f"events_{DAY:%Y%m%d}").mkdir(exist_ok=True)
        con.execute(
            f"COPY ({ga4}) TO '{work}/ga4_json/events_{DAY:%Y%m%d}/{hour:012d}.json.gz' "
            "(FORMAT json, COMPRESSION gzip)"
        )
        con.execute(
            f"COPY ({ga4}) TO '{work}/ga4_parquet/events_{DAY:%Y%m%d}/{hour:012d}.parquet' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        con.execute(
            f"""COPY (SELECT domain_userid AS user_id, page_urlpath AS page,
                            epoch_ms(collector_tstamp) AS ts_ms, event_name FROM hour)
                TO '{work}/csv/clicks_hour_{hour:02d}.csv.gz' (HEADER, COMPRESSION gzip)"""
        )
        con.execute(
            f"""COPY (SELECT row_number() OVER () + {hour * 100_000_000} AS impression_id,
                            domain_userid AS user_id,
                            strftime(collector_tstamp, '%m/%d/%Y %-I:%M:%S %p') AS time,
                            '' AS history,
                            'N' || regexp_extract(page_urlpath, '-(\\d+)$', 1) || '-1'
                              AS impressions
                     FROM hour WHERE event_name = 'page_view'
                       AND regexp_extract(page_urlpath, '-(\\d+)$', 1) <> '')
                TO '{work}/mind/behaviors_{hour:02d}.tsv'
                (HEADER false, DELIMITER '\t', QUOTE '')"""
        )


SMALL_HOUR = 12


def small_layouts(work: Path, files: int) -> None:
    """One hour of lines as one file and as ``files`` files (Snowplow in its hour folder, the
    click log's rows of that hour with its header), made once."""
    import gzip

    target = work / "small"
    marker = target / f"_made_{files}"
    if marker.exists():
        return
    shutil.rmtree(target, ignore_errors=True)
    hour = sorted((work / "snowplow").glob(f"*/*/*/{SMALL_HOUR:02d}/*.json.gz"))

    def lines_of(paths: list[Path]) -> list[bytes]:
        data = b"".join(gzip.decompress(path.read_bytes()) for path in paths)
        return [line + b"\n" for line in data.split(b"\n") if line]

    lines = lines_of(hour)
    folder = DAY.strftime("%Y/%m/%d/") + f"{SMALL_HOUR:02d}"
    header, *records = lines_of([work / "csv" / f"clicks_hour_{SMALL_HOUR:02d}.csv.gz"])
    for layout, count in (("one", 1), ("many", files)):
        for kind, items, make in (
            ("snowplow", lines, lambda i: f"{folder}/part-{i:05d}.json.gz"),
            ("csv", records, lambda i: f"clicks-{i:05d}.csv.gz"),
        ):
            size = -(-len(items) // count)
            for i in range(count):
                path = target / layout / kind / make(i)
                path.parent.mkdir(parents=True, exist_ok=True)
                body = b"".join(items[i * size : (i + 1) * size])
                path.write_bytes(gzip.compress(header + body if kind == "csv" else body, 6))
    marker.write_text("")


def child_source(work: Path, name: str) -> dict[str, Any]:
    import pandas as pd

    from recs_pipeline.adapters.sources import event_source
    from recs_pipeline.core.site import SiteConfig

    events = dict(SOURCES[name.split("/")[-1]])
    events["location"] = str(work / name)
    site = SiteConfig.model_validate(
        {"name": "bench", "timezone": "UTC", "start_date": DAY.isoformat(), "events": events}
    )
    began = time.perf_counter()
    now = pd.Timestamp(DAY + dt.timedelta(days=2), tz="UTC")
    ((_, result),) = list(event_source(site).read_days([DAY], now=now))
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "lines": result.lines_read,
        "events": len(result.events),
        "quarantined": len(result.quarantine),
        "duplicates": result.duplicates,
        "ignored": result.ignored_events,
        "non_article": result.non_article_events,
    }


def child_baseline(work: Path, name: str) -> dict[str, Any]:
    """A bare scan of the same files: no validation, no de-duplication, no canonical frame."""
    import duckdb
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    began = time.perf_counter()
    con = duckdb.connect()
    if name == "snowplow":
        files = [str(f) for f in sorted((work / "snowplow").glob("*/*/*/*/*.json.gz"))]
        rows = con.execute(
            """SELECT count(*) FROM read_json($f, format='newline_delimited', ignore_errors=true,
               columns={event_id: 'VARCHAR', collector_tstamp: 'VARCHAR',
                        domain_userid: 'VARCHAR', event_name: 'VARCHAR',
                        page_urlpath: 'VARCHAR'})""",
            {"f": files},
        ).fetchone()[0]  # type: ignore[index]
        tool = "DuckDB read_json"
    elif name == "ga4_json":
        files = [str(f) for f in sorted((work / "ga4_json").rglob("*.json.gz"))]
        rows = con.execute(
            "SELECT count(*) FROM read_json($f, format='newline_delimited')", {"f": files}
        ).fetchone()[0]  # type: ignore[index]
        tool = "DuckDB read_json"
    elif name == "ga4_parquet":
        rows = ds.dataset(work / "ga4_parquet", format="parquet").to_table().num_rows
        tool = "pyarrow dataset"
    elif name == "csv":
        rows = 0
        for file in sorted((work / "csv").glob("*.csv.gz")):
            rows += pacsv.read_csv(file).num_rows
        tool = "pyarrow read_csv"
    else:
        rows = 0
        options = pacsv.ParseOptions(delimiter="\t", quote_char=False)
        names = pacsv.ReadOptions(column_names=["a", "b", "c", "d", "e"])
        for file in sorted((work / "mind").glob("*.tsv")):
            rows += pacsv.read_csv(file, read_options=names, parse_options=options).num_rows
        tool = "pyarrow read_csv"
    return {"seconds": time.perf_counter() - began, "lines": int(rows), "tool": tool}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median seconds (its peak memory with it)."""
    return sorted(runs, key=lambda run: float(run["seconds"]))[len(runs) // 2]


def run_child(work: Path, kind: str, name: str, code: Path | None = None) -> dict[str, Any]:
    """One measurement in a process of its own; ``code``: a folder holding another version's
    ``recs_pipeline`` package, imported instead of this checkout's (the "before" column)."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, name, "--workdir", str(work)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def checkout(work: Path, rev: str) -> Path:
    """``recs_pipeline`` as of git revision ``rev``, extracted under ``work`` (once)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    target = work / f"code-{commit}"
    if not (target / "recs_pipeline").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "recs_pipeline"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="valid events in the day")
    parser.add_argument("--users", type=int, default=600_000)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench/ingest"))
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument(
        "--small-files", type=int, default=100, help="files of the small-file layout (0: skip)"
    )
    parser.add_argument(
        "--compare-rev",
        help="also read each source with the code of this git revision, alternating runs "
        "(before / after columns and their ratio, measured side by side)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work: Path = args.workdir.absolute()

    if args.child:
        kind, name = args.child
        result = child_source(work, name) if kind == "source" else child_baseline(work, name)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_mb"] = usage.ru_maxrss / 1024
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(result))
        return 0

    began = time.perf_counter()
    stats = generate_day(work, args.events, args.users)
    print(f"generated {stats['lines']:,} lines in {time.perf_counter() - began:.0f} s", flush=True)
    if not (work / "mind").exists() or not any((work / "mind").iterdir()):
        began = time.perf_counter()
        convert(work)
        print(f"converted in {time.perf_counter() - began:.0f} s", flush=True)

    before_code = checkout(work, args.compare_rev) if args.compare_rev else None
    rows = []
    for name in args.sources.split(","):
        runs = []
        for _ in range(args.repeats):
            # Alternating, so that the load of a shared machine falls on every column alike.
            run = {"source": run_child(work, "source", name)}
            run["bare"] = run_child(work, "baseline", name)
            if before_code is not None:
                run["before"] = run_child(work, "source", name, before_code)
            runs.append(run)
        medians = {key: median_run([run[key] for run in runs]) for key in runs[0]}
        rows.append((name, medians))
        print(name, medians, flush=True)

    print()
    before_head = " before lines/s | before peak MB | after ÷ before |" if before_code else ""
    print(
        "| source | lines read | events kept | ingest lines/s | peak MB "
        f"| bare scan | bare lines/s | peak MB | ingest ÷ bare |{before_head}"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|" + ("---:|" * 3 if before_code else ""))
    for name, medians in rows:
        source, bare = medians["source"], medians["bare"]
        ingest_rate = source["lines"] / source["seconds"]
        bare_rate = bare["lines"] / bare["seconds"]
        line = (
            f"| {name} | {source['lines']:,} | {source['events']:,} | {ingest_rate:,.0f} "
            f"| {source['peak_mb']:,.0f} | {bare['tool']} | {bare_rate:,.0f} "
            f"| {bare['peak_mb']:,.0f} | {ingest_rate / bare_rate:.2f} |"
        )
        if before_code is not None:
            before = medians["before"]
            before_rate = before["lines"] / before["seconds"]
            same = (before["events"], before["quarantined"]) == (
                source["events"],
                source["quarantined"],
            )
            line += (
                f" {before_rate:,.0f} | {before['peak_mb']:,.0f} "
                f"| {ingest_rate / before_rate:.2f}{'' if same else ' (output differs!)'} |"
            )
        print(line)

    if args.small_files:
        small_layouts(work, args.small_files)
        print()
        print(
            f"| source | hour {SMALL_HOUR} lines | 1 file: lines/s | {args.small_files} files: "
            "lines/s | many ÷ one |"
        )
        print("|---|---:|---:|---:|---:|")
        for kind in ("snowplow", "csv"):
            rates = {}
            for layout in ("one", "many"):
                results = [
                    run_child(work, "source", f"small/{layout}/{kind}") for _ in range(args.repeats)
                ]
                result = median_run(results)
                rates[layout] = (result["lines"], result["lines"] / result["seconds"])
            lines, one = rates["one"]
            many = rates["many"][1]
            print(f"| {kind} | {lines:,} | {one:,.0f} | {many:,.0f} | {many / one:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
