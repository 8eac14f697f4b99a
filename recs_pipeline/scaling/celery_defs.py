"""Code location whose steps run on Celery workers (``-m recs_pipeline.scaling.celery_defs``).

The process that runs a run (``dagster asset materialize``, the daemon's run launcher, an ECS
task or a Kubernetes pod) submits each step to ``$RECS_CELERY_QUEUE`` on
``$RECS_CELERY_BROKER_URL``; workers load this same module to execute it, so they need the same
environment (sites, lake, database, Dagster instance). See docs/scaling.md.
"""

from __future__ import annotations

from recs_pipeline.scaling import build_celery_definitions, load_sites_from_environment

defs = build_celery_definitions(load_sites_from_environment())
