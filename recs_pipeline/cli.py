"""The ``recs`` command line: one argparse subcommand per task, one function per subcommand.

Subcommands are thin: they parse arguments, call ``recs_pipeline.core`` and print a summary, so
what they do stays testable without a shell. Exit codes: 0 success, 2 usage or refused request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recs_pipeline.core.site import SiteConfig

Handler = Callable[[argparse.Namespace], int]


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from error


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"share must be in [0, 0.5): {text}")
    return value


def _add_generate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write a synthetic Snowplow clickstream (hourly gzipped JSON lines)",
        description="Write deterministic synthetic news-site events to OUT/YYYY/MM/DD/HH/.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--start", type=_date, required=True, help="first local day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, required=True, help="number of local days")
    parser.add_argument("--users", type=int, default=5_000, help="readers of the site")
    parser.add_argument("--articles-per-day", type=int, default=60, help="articles published a day")
    parser.add_argument(
        "--events-per-day",
        type=int,
        default=None,
        help="approximate valid events per day (default: from the number of users)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same files)")
    parser.add_argument(
        "--malformed-share",
        type=_share,
        default=0.005,
        help="share of lines that are broken on purpose (quarantined at ingest)",
    )
    parser.add_argument(
        "--bot-share", type=_share, default=0.01, help="share of events from bot user agents"
    )
    parser.add_argument(
        "--duplicate-share",
        type=_share,
        default=0.002,
        help="share of events sent twice (de-duplicated by event id)",
    )
    parser.add_argument(
        "--timezone", default="America/Sao_Paulo", help="the site's time zone (day boundaries)"
    )
    parser.add_argument("--host", default="demo.example.com", help="host of the page URLs")
    parser.add_argument("--force", action="store_true", help="wipe OUT first if it holds data")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=cmd_generate)


def _refuse_to_wipe(out: Path) -> str | None:
    """Why ``--force`` must not delete ``out`` (a root, home or a parent of the cwd), if so."""
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == Path(target.anchor) or target == Path.home().resolve():
        return f"refusing to wipe {target}"
    if target == cwd or target in cwd.parents:
        return f"refusing to wipe {target}: it contains the current directory"
    if not target.is_dir():
        return f"{target} exists and is not a directory"
    return None


def cmd_generate(args: argparse.Namespace) -> int:
    """``recs generate``: check settings, refuse a non-empty OUT unless ``--force``, generate."""
    from recs_pipeline.core.synthetic import GeneratorConfig, generate

    try:
        config = GeneratorConfig(
            start=args.start,
            days=args.days,
            users=args.users,
            articles_per_day=args.articles_per_day,
            events_per_day=args.events_per_day,
            timezone=args.timezone,
            host=args.host,
            malformed_share=args.malformed_share,
            duplicate_share=args.duplicate_share,
            bot_share=args.bot_share,
            seed=args.seed,
        )
    except (ValueError, KeyError) as error:  # ZoneInfo raises a KeyError subclass
        print(f"error: {error}", file=sys.stderr)
        return 2
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.force:
            print(f"error: {out} already holds data; use --force to replace it", file=sys.stderr)
            return 2
        reason = _refuse_to_wipe(out)
        if reason:
            print(f"error: {reason}", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    began = time.perf_counter()
    stats = generate(config, out, progress=not args.quiet)
    seconds = time.perf_counter() - began
    malformed = ", ".join(f"{k}={v}" for k, v in stats.malformed.items())
    print(
        f"wrote {stats.lines:,} lines in {stats.files:,} files to {out} in {seconds:.1f}s\n"
        f"  valid events {stats.valid_events:,}: {stats.page_views:,} page views "
        f"({stats.article_page_views:,} article, {stats.non_article_page_views:,} other), "
        f"{stats.page_pings:,} pings, {stats.bot_events:,} from bots\n"
        f"  duplicates {stats.duplicate_lines:,}; malformed {sum(stats.malformed.values()):,} "
        f"({malformed})\n"
        f"  {stats.users:,} users, {stats.articles:,} articles read, "
        f"{stats.first_event:%Y-%m-%d %H:%M} .. {stats.last_event:%Y-%m-%d %H:%M} UTC"
    )
    return 0


def _site(name: str) -> SiteConfig | None:
    """The site of that name in the sites folder; None (and says so) when there is none or
    its file does not load. Every other site file that does not load is a warning."""
    from recs_pipeline import settings
    from recs_pipeline.core.site import read_sites

    files = read_sites(settings.sites_dir())
    sites = {site.name: site for site in files.sites}
    broken = None if name in sites else files.broken_named(name)
    for error in files.broken:
        if error is not broken:
            print(f"warning: site file skipped: {error}", file=sys.stderr)
    if name in sites:
        return sites[name]
    if broken is not None:
        print(f"error: site {name!r} cannot be used: {broken}", file=sys.stderr)
    else:
        print(f"unknown site {name!r}; known: {', '.join(sorted(sites))}", file=sys.stderr)
    return None


def _add_sites(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sites",
        help="list the sites and the site files that do not load (exit 1 if any)",
        description=(
            "List the sites of the sites folder (RECS_SITES_DIR) and, for each file that does "
            "not load, the file and the reason. Exit 1 when a file does not load."
        ),
    )
    parser.set_defaults(handler=cmd_sites)


def cmd_sites(args: argparse.Namespace) -> int:
    """``recs sites``: what loads, what does not and why."""
    from recs_pipeline import settings
    from recs_pipeline.core.site import read_sites

    files = read_sites(settings.sites_dir())
    for site in files.sites:
        print(f"{site.name}: {site.events.format} events from {site.events.location}")
    for error in files.broken:
        print(f"BROKEN {error}")
    if not files.sites and not files.broken:
        print(f"no site files (*.yaml) in {settings.sites_dir()}")
    return 1 if files.broken else 0


def _add_summary(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="rows per stage and a sample of published recommendations",
        description="Print what the lake and the serving database hold for a site.",
    )
    parser.add_argument("--site", required=True, help="site name (a file in the sites folder)")
    parser.set_defaults(handler=cmd_summary)


def cmd_summary(args: argparse.Namespace) -> int:
    from recs_pipeline import settings
    from recs_pipeline.adapters.lake import lake_from_url
    from recs_pipeline.adapters.publishing import publisher_from_url
    from recs_pipeline.report import site_summary

    site = _site(args.site)
    if site is None:
        return 2
    lake = lake_from_url(settings.lake_url())
    print(site_summary(site, lake, publisher_from_url(settings.database_url())))
    return 0


def _add_recommend(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "recommend",
        help="what the pipeline would recommend to readers as of a moment",
        description=(
            "Rebuild a site's per-reader lists as of TIMESTAMP from the lake, through the same "
            "code as the user_recommendations asset (the ranker for every reader, else fresh "
            "popularity), and write them as Parquet with columns user_id, rank, article_id, "
            "score. Needs the raw_events partition of TIMESTAMP's day; uses the ranker, ALS and "
            "similar articles of that day or the day before and the engagement partitions of "
            "the read horizon when they are materialised."
        ),
    )
    parser.add_argument("--site", required=True, help="site name (a file in the sites folder)")
    parser.add_argument("--as-of", required=True, help="ISO timestamp; without an offset it is UTC")
    parser.add_argument(
        "--users",
        type=Path,
        default=None,
        help="file of user ids, one a line (or a Parquet/CSV file with a user_id column); "
        "default: every reader of the read set",
    )
    parser.add_argument("--out", type=Path, required=True, help="output Parquet file")
    parser.set_defaults(handler=cmd_recommend)


def _read_users(path: Path) -> list[str]:
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path, columns=["user_id"])["user_id"].astype(str).tolist()
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str)["user_id"].tolist()
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def cmd_recommend(args: argparse.Namespace) -> int:
    """``recs recommend``: lists as of a moment, from the lake, written as Parquet."""
    from recs_pipeline import settings
    from recs_pipeline.adapters.lake import lake_from_url
    from recs_pipeline.adapters.serving_inputs import MissingPartition, serving_inputs_from_lake
    from recs_pipeline.core.serving import recommendations_as_of
    from recs_pipeline.core.timeframe import parse_moment

    site = _site(args.site)
    if site is None:
        return 2
    try:
        moment = parse_moment(args.as_of)
    except ValueError as error:
        print(f"error: not a timestamp: {args.as_of!r} ({error})", file=sys.stderr)
        return 2
    users = _read_users(args.users) if args.users else None
    began = time.perf_counter()
    try:
        inputs = serving_inputs_from_lake(lake_from_url(settings.lake_url()), site, moment)
    except MissingPartition as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    recs = recommendations_as_of(
        inputs, site.models.per_user, site.models.ranker.active_hours, users=users
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    recs[["user_id", "rank", "article_id", "score"]].to_parquet(args.out, index=False)
    firsts = recs.loc[recs["rank"] == 1]
    sources = firsts.groupby(["group", "source"]).size().to_dict() if len(recs) else {}
    print(
        f"{recs['user_id'].nunique() if len(recs) else 0:,} readers, {len(recs):,} rows as of "
        f"{moment.isoformat()} -> {args.out} in {time.perf_counter() - began:.1f}s "
        f"(ranker: {'yes' if inputs.ranker is not None else 'no'}; readers by group and source: "
        f"{sources})"
    )
    return 0


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the serving API (published lists + live popularity and sessions)",
        description="Serve recommendations over HTTP (docs/serving.md). The serving database "
        "comes from RECS_DATABASE_URL, live state from RECS_LIVE_URL (in process when unset), "
        "the warm-up events from the lake (RECS_LAKE_URL).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (loopback by default)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--site", action="append", default=[], help="serve this site (repeatable; default all)"
    )
    parser.add_argument(
        "--no-warm", action="store_true", help="start with empty live state (no lake replay)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on the one port (more than 1 needs RECS_LIVE_URL: they share "
        "live state in Redis)",
    )
    parser.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``recs serve``: build the API from the environment and run it until interrupted."""
    from recs_pipeline.serving.server import serve

    try:
        serve(args.host, args.port, args.site, warm=not args.no_warm, workers=args.workers)
    except ValueError as error:
        print(f"recs serve: {error}", file=sys.stderr)
        return 2
    return 0


def _add_replay(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="score the session protocol through the serving API (evaluation.md)",
        description="For each day: start `recs serve`, post the clicks in time order, ask a "
        "list before every session's last click over HTTP, and score it with the same run's "
        "baselines (docs/serving.md).",
    )
    parser.add_argument("--site", required=True, help="site name (a file in the sites folder)")
    parser.add_argument(
        "--days",
        nargs=2,
        type=_date,
        required=True,
        metavar=("FIRST", "LAST"),
        help="first and last local day to replay, YYYY-MM-DD",
    )
    parser.add_argument("--sample", type=int, default=None, help="sessions to score in all")
    parser.add_argument(
        "--warm-hours",
        type=float,
        default=24.0,
        help="hours of events before each day posted first, to warm the live state",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="serve what is published there (the graph's publish); default: a fresh database "
        "where each day publishes the popular list and the session ranker of the day before",
    )
    parser.add_argument(
        "--no-session-ranker",
        action="store_true",
        help="publish no session ranker (the API answers with its blend)",
    )
    parser.set_defaults(handler=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """``recs replay``: print the session protocol's table for the days."""
    from recs_pipeline.serving.replay import iter_days, markdown, replay

    site = _site(args.site)
    if site is None:
        return 2
    began = time.perf_counter()
    try:
        results = replay(
            site,
            list(iter_days(*args.days)),
            database_url=args.database_url,
            warm_hours=args.warm_hours,
            sample=args.sample,
            session_ranker=not args.no_session_ranker,
        )
    except FileNotFoundError as error:
        print(f"recs replay: {error}", file=sys.stderr)
        return 2
    print(markdown(results))
    print(f"({time.perf_counter() - began:.0f}s)")
    return 0


def _add_gate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "gate",
        help="why the last run of a site did not publish (exit 0 when only the gate stopped it)",
        description=(
            "Read the newest run of the site's user_recommendations from the Dagster instance "
            "(DAGSTER_HOME). When only blocking gate checks failed, print their reasons and the "
            "versions that stay served, and exit 0: a blocked publish is a correct outcome. "
            "Exit 1 when the run failed elsewhere, or when there is no such run."
        ),
    )
    parser.add_argument("--site", required=True, help="site name (a file in the sites folder)")
    parser.set_defaults(handler=cmd_gate)


def cmd_gate(args: argparse.Namespace) -> int:
    """``recs gate``: a failed run explained; 0 when only the gate failed."""
    import dagster as dg

    from recs_pipeline import settings
    from recs_pipeline.adapters.publishing import publisher_from_url
    from recs_pipeline.gate_report import last_run_gate, served_instead

    with dg.DagsterInstance.get() as instance:
        outcome = last_run_gate(instance, args.site)
    if outcome is None:
        print(f"no run of {args.site}/user_recommendations in the instance", file=sys.stderr)
        return 1
    if not outcome.only_the_gate:
        others = sorted(outcome.failed_steps - outcome.gate_steps)
        print(
            f"run {outcome.run_id} failed outside the publishing gate: "
            f"{', '.join(others) or 'no failed step recorded'} (see its log above)",
            file=sys.stderr,
        )
        return 1
    print(f"\nThe publishing gate stopped the publish of {args.site} (run {outcome.run_id}):")
    for name, reason in outcome.reasons:
        print(f"- {name}: {reason}")
    print("Served instead:")
    publisher = publisher_from_url(settings.database_url())
    print("\n".join(served_instead(publisher, args.site)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``recs`` parser; each subcommand registers itself and its handler."""
    parser = argparse.ArgumentParser(prog="recs", description="recs_pipeline tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate(subparsers)
    _add_sites(subparsers)
    _add_summary(subparsers)
    _add_recommend(subparsers)
    _add_serve(subparsers)
    _add_replay(subparsers)
    _add_gate(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recs`` console script."""
    from recs_pipeline.core.site import SiteConfigError

    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SiteConfigError as error:  # a site file read deeper down: one paragraph, no trace
        print(f"recs {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
