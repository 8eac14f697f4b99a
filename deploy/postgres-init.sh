#!/bin/sh
# First start of the Postgres container: one database for the Dagster instance, one for the
# serving tables (and the asset tables), each owned by its own role. Passwords come from the
# container's environment (docker-compose.yml), never from this file.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v dagster_password="$DAGSTER_PG_PASSWORD" -v recs_password="$RECS_PG_PASSWORD" <<'SQL'
CREATE ROLE dagster LOGIN PASSWORD :'dagster_password';
CREATE DATABASE dagster OWNER dagster;
CREATE ROLE recs LOGIN PASSWORD :'recs_password';
CREATE DATABASE recs OWNER recs;
SQL
