"""MIND behaviours (``behaviors.tsv``): clicks inside impression logs, and click histories.

A row is ``impression_id, user_id, time, history, impressions``: ``impressions`` lists the
articles shown (``N123-1`` clicked, ``N456-0`` not), ``history`` the articles the user clicked
before (no times). A clicked impression is a ``page_view`` at the impression's time; with
``mind_history`` the history of a user becomes views dated at the user's first impression row in
the file (once per user and file). Articles are named by id (no paths); no dwell time.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd

from recs_pipeline.adapters.sources.base import LandingFile, pseudonymiser_of, rules_of
from recs_pipeline.adapters.sources.delimited import delimited_rows
from recs_pipeline.adapters.sources.tables import TableFileSource
from recs_pipeline.core.events import (
    CONTROL_CHARACTERS,
    QUARANTINE_RAW_CHARS,
    ParsedLines,
    QuarantineRow,
    concat_events,
    events_from_table,
    parse_timestamps,
    quarantine_frame,
)
from recs_pipeline.core.site import EventSourceConfig

COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_TOKEN = r"^[A-Za-z0-9_]+-[01]$"


class MindBehaviors(TableFileSource):
    """Impression logs in the MIND format."""

    def __init__(self, config: EventSourceConfig, tz: ZoneInfo, first_day: dt.date) -> None:
        super().__init__(config, tz, first_day)
        self.rules = rules_of(config)

    def parse_file(self, file: LandingFile) -> ParsedLines:
        name = self.relative(file.path)
        users = pseudonymiser_of(self.config)
        seen: set[str] = set()
        events: list[pd.DataFrame] = []
        invalid: list[QuarantineRow] = []
        bad: list[QuarantineRow] = []
        rows = extra = ignored = 0
        for frame, numbers, not_utf8 in delimited_rows(
            self.line_batches(file.path),
            name,
            list(COLUMNS),
            {column: column for column in COLUMNS},
            "\t",
            quote=False,
            first_line=1,
            max_line_bytes=self.max_line_bytes,
            bad=invalid,
        ):
            frame["line_no"] = numbers
            rows += len(frame)
            table, rejected = self._events_of(frame, set(not_utf8), seen)
            bad.extend((reason, name, int(no), text) for reason, no, text in rejected)
            # A row is one line; its clicks and history are events: rows without any (no click,
            # history already given) are ignored, events beyond one per row are extra.
            producing = int(table["line_no"].nunique()) if not table.empty else 0
            ignored += len(frame) - len(rejected) - producing
            extra += len(table) - producing
            if not table.empty:
                parsed = events_from_table(
                    table,
                    name,
                    "iso",
                    self.config.timestamp_timezone,
                    users=users,
                    timestamp_format=self.config.timestamp_format or TIME_FORMAT,
                    line_numbers=table["line_no"].to_numpy(),
                )
                events.append(parsed.events)
                bad.extend(parsed.quarantine.itertuples(index=False, name=None))
        bad.extend(invalid)
        quarantine = (
            quarantine_frame(sorted(bad, key=lambda row: row[2])) if bad else quarantine_frame([])
        )
        if users is not None and not quarantine.empty:
            quarantine["raw"] = quarantine["raw"].map(users.redact)
        empty = events_from_table(
            pd.DataFrame({"user_id": [], "ts": [], "article_id": []}, dtype="string"), name, "ms"
        ).events
        return ParsedLines(
            name,
            concat_events(events) if events else empty,
            quarantine,
            rows + len(invalid),
            ignored=ignored,
            extra_events=extra,
        )

    def _events_of(
        self, frame: pd.DataFrame, not_utf8: set[int], seen: set[str]
    ) -> tuple[pd.DataFrame, list[tuple[str, int, str]]]:
        """Click and history events of a batch of rows, and the rows rejected with a reason."""
        reason = pd.Series(pd.NA, index=frame.index, dtype="string")
        reason[list(not_utf8)] = "not_utf8"
        user = frame["user_id"].str.strip()
        reason = reason.mask(
            reason.isna() & (user.isna() | (user == "") | frame["time"].isna()), "missing_field"
        )
        stamps = parse_timestamps(
            frame["time"].fillna(""),
            "iso",
            self.config.timestamp_timezone,
            self.config.timestamp_format or TIME_FORMAT,
        )
        reason = reason.mask(reason.isna() & stamps.isna(), "bad_timestamp")
        # A row, not each of its events, is quarantined for a control character.
        control = pd.Series(False, index=frame.index)
        for column in ("impression_id", "user_id", "history", "impressions"):
            control |= frame[column].str.contains(CONTROL_CHARACTERS, regex=True).fillna(False)
        reason = reason.mask(reason.isna() & control, "control_character")
        tokens = frame["impressions"].fillna("").str.split().explode()
        valid = tokens.str.match(_TOKEN).fillna(False).astype(bool)
        malformed = ~valid.groupby(level=0).all()
        reason = reason.mask(reason.isna() & malformed, "wrong_type")
        bad = reason.notna()
        text = frame.loc[bad, "impression_id"].fillna("")
        for column in COLUMNS[1:]:
            text = text + "\t" + frame.loc[bad, column].fillna("")
        rejected = [
            (str(r), int(no), t[:QUARANTINE_RAW_CHARS])
            for r, no, t in zip(reason[bad], frame.loc[bad, "line_no"], text, strict=True)
        ]
        good = frame.loc[reason.isna()].assign(user_id=user[reason.isna()])
        clicks = good.assign(token=good["impressions"].str.split()).explode("token")
        clicks = clicks.loc[clicks["token"].str.endswith("-1")]
        click_rows = pd.DataFrame(
            {
                "user_id": clicks["user_id"],
                "ts": clicks["time"],
                "article_id": clicks["token"].str.slice(0, -2),
                "event_id": clicks["impression_id"] + "|" + clicks["token"].str.slice(0, -2),
                "line_no": clicks["line_no"],
            }
        )
        parts = [click_rows]
        if self.config.mind_history:
            first = good.loc[~good["user_id"].isin(seen)].drop_duplicates("user_id")
            seen.update(first["user_id"].tolist())
            history = first.assign(article=first["history"].fillna("").str.split()).explode(
                "article"
            )
            history = history.loc[history["article"].notna() & (history["article"] != "")]
            parts.append(
                pd.DataFrame(
                    {
                        "user_id": history["user_id"],
                        "ts": history["time"],
                        "article_id": history["article"],
                        "event_id": pd.Series(pd.NA, index=history.index, dtype="string"),
                        "line_no": history["line_no"],
                    }
                )
            )
        table = pd.concat(parts, ignore_index=True).astype(
            {"user_id": "string", "ts": "string", "article_id": "string", "event_id": "string"}
        )
        return table, rejected
