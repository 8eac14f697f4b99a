# syntax=docker/dockerfile:1.7
# The recs_pipeline image: one image for the code location (gRPC server), the Dagster webserver
# and the daemon (docker-compose.yml picks the command). Dependencies come from uv.lock only.
#
# BASE_IMAGE and UV_IMAGE default to the registry images; scripts/build_image.sh builds this file
# with buildah where no registry serves them (a debootstrapped bookworm root, uv from its package).
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# -- build: resolve the locked environment into /app/.venv -----------------------------------
FROM ${BASE_IMAGE} AS build

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first, from the lock file alone: this layer is rebuilt only when uv.lock or
# pyproject.toml change, not on every code change. Absolute targets: Debian 12's buildah refuses
# relative ones.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=/app/uv.lock \
    --mount=type=bind,source=pyproject.toml,target=/app/pyproject.toml \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself (not editable: the runtime image has no source tree to point at).
COPY pyproject.toml uv.lock README.md ./
COPY recs_pipeline ./recs_pipeline
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# -- runtime: the environment, the site files and the instance config; no build tools --------
FROM ${BASE_IMAGE} AS runtime

# implicit and LightGBM need OpenMP at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 recs \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/recs --create-home recs \
    && mkdir -p /var/lib/recs /opt/dagster/home \
    && chown 10001:10001 /var/lib/recs /opt/dagster/home

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    RECS_HOME=/var/lib/recs \
    RECS_SITES_DIR=/app/sites \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY sites ./sites
COPY deploy/workspace.yaml ./deploy/workspace.yaml
COPY deploy/dagster.postgres.yaml /opt/dagster/home/dagster.yaml

USER 10001:10001
EXPOSE 3000 4000 8000

# The code location; the webserver and the daemon override the command (docker-compose.yml).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "recs_pipeline.definitions", "--location-name", "recs_pipeline"]
