# The code location image: dependencies from the lock file, non-root, libgomp for implicit/LightGBM.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/app/.venv/bin:$PATH \
    RECS_HOME=/app/var \
    DAGSTER_HOME=/app/var/dagster_home \
    OPENBLAS_NUM_THREADS=1

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY recs_pipeline ./recs_pipeline
COPY sites ./sites
COPY workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev \
    && useradd --create-home --uid 10001 recs \
    && mkdir -p /app/var/dagster_home \
    && cp dagster.yaml /app/var/dagster_home/dagster.yaml \
    && chown -R recs /app/var

USER recs
EXPOSE 3000
CMD ["dagster", "dev", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
