"""Parse, validate, normalise and de-duplicate events; quarantine what is malformed.

Sources hand this module raw lines (Snowplow or GA4 JSON lines) or tables (delimited files, GA4
Parquet, MIND impression logs); it returns the canonical event frame of ``schemas.EVENT_COLUMNS``
and a quarantine frame where every rejected line keeps its reason, file and line number. Nothing
is silently dropped: a line is an event of some day, a duplicate (counted), a non-article page
event (counted by reason), an event of a kind the site ignores (counted) or quarantined.

Which day a line belongs to: a valid event belongs to the day of its timestamp. A line that cannot
be dated (malformed) or whose timestamp contradicts the hour folder it was delivered in belongs to
the file's *home day*, so that exactly one day partition quarantines it, however many day runs
read the file.

The modules: ``common`` (limits, rules, pseudonyms, the frames and their helpers), ``snowplow``
(Snowplow JSON lines), ``ga4`` (GA4 export rows), ``tables`` (rows of delimited files, GA4 Parquet
and MIND, validated column-wise) and ``day`` (a day partition assembled from parsed files).

Memory: a file is parsed in batches of lines, and only what the canonical frame needs is kept
(a user agent only when it is a bot's, a URL once per distinct value through Arrow strings), so a
day's frame is the bulk of the memory a day run needs.
"""

from __future__ import annotations

from recs_pipeline.core.events.common import (
    BATCH_LINES,
    CHECKED_FIELDS,
    COMPACT_COLUMNS,
    CONTROL_CHARACTERS,
    EARLIEST_PLAUSIBLE,
    FOLDER_SLACK,
    KNOWN_EVENTS,
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    QUARANTINE_RAW_CHARS,
    DayEvents,
    EventRules,
    ParsedLines,
    Pseudonymiser,
    QuarantineRow,
    compact,
    concat_events,
    empty_raw,
    has_control_character,
    quarantine_frame,
    string_series,
)
from recs_pipeline.core.events.day import (
    article_ids,
    assemble_day,
    home_day,
)
from recs_pipeline.core.events.ga4 import (
    GA4_PARAMS,
    ga4_events,
    parse_ga4_lines,
)
from recs_pipeline.core.events.snowplow import (
    parse_snowplow_fast,
    parse_snowplow_group,
    parse_snowplow_lines,
)
from recs_pipeline.core.events.tables import (
    events_from_table,
    parse_timestamps,
)

__all__ = [
    "BATCH_LINES",
    "CHECKED_FIELDS",
    "COMPACT_COLUMNS",
    "CONTROL_CHARACTERS",
    "EARLIEST_PLAUSIBLE",
    "FOLDER_SLACK",
    "GA4_PARAMS",
    "KNOWN_EVENTS",
    "MAX_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "QUARANTINE_RAW_CHARS",
    "DayEvents",
    "EventRules",
    "ParsedLines",
    "Pseudonymiser",
    "QuarantineRow",
    "article_ids",
    "assemble_day",
    "compact",
    "concat_events",
    "empty_raw",
    "events_from_table",
    "ga4_events",
    "has_control_character",
    "home_day",
    "parse_ga4_lines",
    "parse_snowplow_fast",
    "parse_snowplow_group",
    "parse_snowplow_lines",
    "parse_timestamps",
    "quarantine_frame",
    "string_series",
]
