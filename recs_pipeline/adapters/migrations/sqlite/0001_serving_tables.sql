-- Serving tables: the article registry, model versions and their recommendation lists.
--
-- Timestamps are UTC ISO-8601 text in one fixed format (YYYY-MM-DDTHH:MM:SS.ffffff+00:00), so
-- text order is time order. The recommendation table is WITHOUT ROWID: its primary key is the
-- serving key, so one model's list for one source entity is a single contiguous range.

CREATE TABLE article (
    site         TEXT NOT NULL,
    article_id   TEXT NOT NULL,
    path         TEXT,
    title        TEXT,
    published_at TEXT,
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (site, article_id)
) WITHOUT ROWID;

-- AUTOINCREMENT: a model id is never reused, so an id seen by a client always names one version.
CREATE TABLE model (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site        TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('user', 'article', 'popular')),
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'current', 'stale', 'failed')),
    as_of       TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    metrics     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    row_count   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT
);

CREATE INDEX model_site_type_status ON model (site, type, status);

-- At most one current version per (site, type), whatever the code does.
CREATE UNIQUE INDEX model_one_current ON model (site, type) WHERE status = 'current';

CREATE TABLE recommendation (
    model_id               INTEGER NOT NULL REFERENCES model (id) ON DELETE CASCADE,
    source_entity_id       TEXT NOT NULL,
    rank                   INTEGER NOT NULL CHECK (rank >= 1),
    recommended_article_id TEXT NOT NULL,
    score                  REAL NOT NULL,
    PRIMARY KEY (model_id, source_entity_id, rank)
) WITHOUT ROWID;
