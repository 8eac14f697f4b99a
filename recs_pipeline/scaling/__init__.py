"""The same code location on other executors: steps on Celery workers or in Kubernetes jobs.

``recs_pipeline.definitions`` runs every step of a run in the run's own process (the in-process
executor: the graph's steps are short pandas/numpy work). The modules here build the very same
assets, checks, jobs, schedules and sensors, with another default executor, for deployments
that spread one run's steps over machines (see docs/scaling.md):

- ``recs_pipeline.scaling.celery_defs``: ``dagster_celery``'s executor; the run's process submits
  each step to a Celery queue and workers started elsewhere (``dagster-celery worker start``)
  execute it.
- ``recs_pipeline.scaling.k8s_defs``: ``dagster_k8s``' ``k8s_job_executor``; each step is a
  Kubernetes job of its own (with the ``K8sRunLauncher`` in the instance, the run is one too).

Broker and result backend come from the environment where the code location is loaded, like the
storage URLs: kept as environment variables in the executor's config (never in run configs or
the UI), and not run-configurable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from recs_pipeline import settings
from recs_pipeline.core.site import SiteConfig, load_sites
from recs_pipeline.definitions import build_definitions

CELERY_BROKER_ENV = "RECS_CELERY_BROKER_URL"
CELERY_BACKEND_ENV = "RECS_CELERY_BACKEND_URL"
CELERY_QUEUE_ENV = "RECS_CELERY_QUEUE"
# dagster-celery's own defaults: RabbitMQ on this host, results over AMQP (rpc://), queue dagster.
DEFAULT_CELERY_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND = "rpc://"
DEFAULT_CELERY_QUEUE = "dagster"


def _from_environment(name: str, default: str) -> str | dict[str, str]:
    """The variable itself (resolved when a run starts) if it is set, else the default."""
    return {"env": name} if os.environ.get(name) else default


def celery_queue() -> str:
    return os.environ.get(CELERY_QUEUE_ENV) or DEFAULT_CELERY_QUEUE


def recs_celery_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor bound to the broker, backend and queue of the environment."""
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": _from_environment(CELERY_BROKER_ENV, DEFAULT_CELERY_BROKER),
            "backend": _from_environment(CELERY_BACKEND_ENV, DEFAULT_CELERY_BACKEND),
            # Steps without a dagster-celery/queue tag go to this queue; workers listen on it
            # (``dagster-celery worker start -q $RECS_CELERY_QUEUE``).
            "config_source": {"task_default_queue": celery_queue()},
        },
        name="recs_celery",
    )


def recs_k8s_job_executor() -> dg.ExecutorDefinition:
    """dagster-k8s' executor: every step in a Kubernetes job of its own.

    The image, namespace, service account and environment come from the run launcher's config
    in the instance (``deploy/k8s/values.yaml``); a run may still narrow them with its
    ``execution`` config (``job_namespace``, ``max_concurrent``, ``step_k8s_config``, ...).
    """
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


def with_executor(base: dg.Definitions, executor: dg.ExecutorDefinition) -> dg.Definitions:
    """``base`` with another default executor: every job and asset materialisation uses it."""
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        jobs=base.jobs,
        schedules=base.schedules,
        sensors=base.sensors,
        resources=base.resources,
        loggers=base.loggers,
        metadata=base.metadata,
        executor=executor,
    )


def build_celery_definitions(
    sites: list[SiteConfig], lake_url: str | None = None, database_url: str | None = None
) -> dg.Definitions:
    return with_executor(build_definitions(sites, lake_url, database_url), recs_celery_executor())


def build_k8s_definitions(
    sites: list[SiteConfig], lake_url: str | None = None, database_url: str | None = None
) -> dg.Definitions:
    return with_executor(build_definitions(sites, lake_url, database_url), recs_k8s_job_executor())


def load_sites_from_environment(sites_dir: Path | None = None) -> list[SiteConfig]:
    return load_sites(sites_dir or settings.sites_dir())
