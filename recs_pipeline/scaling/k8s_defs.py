"""Code location whose steps each run in a Kubernetes job (``-m recs_pipeline.scaling.k8s_defs``).

Use it with the ``K8sRunLauncher`` of ``deploy/k8s/`` when single steps (the ranker, the
evaluation of a large site) need a pod of their own; otherwise the plain
``recs_pipeline.definitions`` runs the whole run in its one pod. See docs/scaling.md.
"""

from __future__ import annotations

from recs_pipeline.scaling import build_k8s_definitions, load_sites_from_environment

defs = build_k8s_definitions(load_sites_from_environment())
