-- Serving tables on Postgres: the article registry, model versions and their recommendation lists.
--
-- Ids are compared byte by byte (COLLATE "C"): they are identifiers, not words, and byte order
-- keeps index builds and lookups cheap.

CREATE TABLE article (
    site         text COLLATE "C" NOT NULL,
    article_id   text COLLATE "C" NOT NULL,
    path         text,
    title        text,
    published_at timestamptz,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (site, article_id)
);

-- An identity never reuses a value, so a model id seen by a client always names one version.
CREATE TABLE model (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        text COLLATE "C" NOT NULL,
    type        text NOT NULL CHECK (type IN ('user', 'article', 'popular')),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'current', 'stale', 'failed')),
    as_of       timestamptz NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}',
    metrics     jsonb NOT NULL DEFAULT '{}',
    row_count   bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    error       text
);

CREATE INDEX model_site_type_status ON model (site, type, status);

-- At most one current version per (site, type), whatever the code does.
CREATE UNIQUE INDEX model_one_current ON model (site, type) WHERE status = 'current';

-- One partition per model version, named recommendation_m<model id>. A version is loaded into
-- a table of its own (binary COPY with no index to maintain, then one index build) and attached;
-- a pruned version's partition is detached concurrently and dropped, so neither costs readers a
-- lock wait nor leaves dead rows to vacuum. Uniqueness of (source, rank) within a version is
-- checked before loading.
CREATE TABLE recommendation (
    model_id               bigint NOT NULL,
    source_entity_id       text COLLATE "C" NOT NULL,
    rank                   integer NOT NULL CHECK (rank >= 1),
    recommended_article_id text COLLATE "C" NOT NULL,
    score                  double precision NOT NULL
) PARTITION BY LIST (model_id);

-- The serving query: the current version's partition (pruned at run time from the model id),
-- one source entity's rows already in rank order.
CREATE INDEX recommendation_serving ON recommendation (source_entity_id, rank);
