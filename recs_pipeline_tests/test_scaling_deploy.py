"""The instance files of ``deploy/ecs``, ``deploy/k8s`` and ``deploy/celery`` load and launch.

Nothing here contacts AWS or a Kubernetes cluster: each instance file is loaded with Dagster's
own instance schema; the run launcher and compute log manager classes are built from their
config (which runs their config validation); the ECS launcher then starts a run's task against
moto's in-process ECS, and the Kubernetes launcher creates a run's Job through a recording
batch API, so the task definition and the Job it would submit are checked field by field. The
Helm values are checked against the fields of the ``K8sRunLauncher`` config (the Dagster
chart's JSON schema is not available offline) and against ``deploy/k8s/dagster.yaml``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.definitions.definition_config_schema import ConfiguredDefinitionConfigSchema
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import (
    GrpcServerCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._serdes import ConfigurableClassData, serialize_value

PROJECT = Path(__file__).resolve().parent.parent
DEPLOY = PROJECT / "deploy"
IMAGE = "registry.example.com/recs-pipeline:0.1.0"
ECS_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "RECS_ECS_LOG_GROUP": "/recs/runs",
    "RECS_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/recs-execution",
    "RECS_ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/recs-run",
    "RECS_ECS_PG_PASSWORD_SECRET_ARN": (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:recs/pg-password"
    ),
    "RECS_ECS_DATABASE_URL_SECRET_ARN": (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:recs/database-url"
    ),
    "RECS_COMPUTE_LOGS_BUCKET": "recs-dagster-logs",
    "RECS_LAKE_URL": "s3://recs-lake/lake",
    "RECS_SITES_DIR": "/app/sites",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def _yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_ECS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ECS_ENV.items():
        monkeypatch.setenv(name, value)
    yield


def _instance_config(path: Path, tmp_path: Path) -> Mapping[str, Any]:
    """The file as Dagster loads ``$DAGSTER_HOME/dagster.yaml``: schema-validated, defaults in."""
    home = tmp_path / path.parent.name
    home.mkdir()
    shutil.copy(path, home / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    return config


def _build(section: Mapping[str, Any], **overrides: Any) -> Any:
    """The class of an instance section, built from its config (validated on the way)."""
    data = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump({**section["config"], **overrides})
    )
    return data.rehydrate(as_type=object)


def _processed(config_type: Any, value: Mapping[str, Any]) -> dict[str, Any]:
    result = process_config(config_type, value)
    assert result.success, [error.message for error in result.errors or []]
    assert isinstance(result.value, dict)
    return result.value


def _add_run(instance: dg.DagsterInstance, site: str) -> dg.DagsterRun:
    """A run of the code location as the daemon would launch it: served by a gRPC code server
    whose image is the project's."""
    origin = JobPythonOrigin(
        "__ASSET_JOB",
        RepositoryPythonOrigin(
            executable_path="/app/.venv/bin/python",
            code_pointer=ModuleCodePointer("recs_pipeline.definitions", "defs", "/app"),
            container_image=IMAGE,
        ),
    )
    remote = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(host="code", port=4000, location_name="recs_pipeline"),
            "__repository__",
        ),
        "__ASSET_JOB",
    )
    return instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            job_code_origin=origin,
            remote_job_origin=remote,
            tags={"recs/site": site},
        )
    )


EXECUTE_RUN = ["/app/.venv/bin/python", "-m", "dagster", "api", "execute_run"]


# --- every instance file --------------------------------------------------------------------


@pytest.mark.parametrize("target", ["ecs", "k8s"])
def test_instance_file_passes_dagsters_schema(
    target: str, tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _instance_config(DEPLOY / target / "dagster.yaml", tmp_path)
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == {
        "ecs": ("dagster_aws.ecs", "EcsRunLauncher"),
        "k8s": ("dagster_k8s", "K8sRunLauncher"),
    }[target]
    # Runs, event logs and schedules in Postgres (every container reads the same instance),
    # with the driver dagster-postgres needs under SQLAlchemy 2.1.
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"
    from dagster_postgres import DagsterPostgresStorage

    _processed(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    # Step logs through dagster-aws' S3 compute log manager, which builds without AWS.
    logs = _build(config["compute_logs"])
    assert type(logs).__name__ == "S3ComputeLogManager"


@pytest.mark.parametrize("target", ["ecs", "k8s"])
def test_instance_files_keep_the_per_site_limits_of_dagster_yaml(
    target: str, tmp_path: Path, aws_env: None
) -> None:
    """One slot per site pool (op granularity) and one recs/site-tagged run per site at once."""
    project = _yaml(PROJECT / "dagster.yaml")
    deployed = _instance_config(DEPLOY / target / "dagster.yaml", tmp_path)
    pools = deployed["concurrency"]["pools"]
    assert pools["default_limit"] == project["concurrency"]["pools"]["default_limit"] == 1
    assert pools["granularity"] == project["concurrency"]["pools"]["granularity"] == "op"
    runs = deployed["concurrency"]["runs"]
    project_runs = project["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == project_runs["max_concurrent_runs"]
    assert runs["tag_concurrency_limits"] == project_runs["tag_concurrency_limits"]
    assert deployed["run_monitoring"]["enabled"] and deployed["run_retries"]["enabled"]


def test_celery_worker_config_is_the_executors() -> None:
    """``dagster-celery worker start -y deploy/celery/worker.yaml`` reads the executor's block."""
    from dagster_celery import celery_executor
    from dagster_celery.cli import get_config_value_from_yaml

    worker = get_config_value_from_yaml(str(DEPLOY / "celery" / "worker.yaml"))
    assert worker["broker"] == {"env": "RECS_CELERY_BROKER_URL"}
    assert worker["backend"] == {"env": "RECS_CELERY_BACKEND_URL"}
    assert validate_config(celery_executor.config_schema.config_type, worker).success


def test_celery_location_keeps_the_broker_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker URL (with its password) stays a variable; a run config cannot change it."""
    from recs_pipeline.scaling import build_celery_definitions
    from recs_pipeline_tests.conftest import site_config

    secret_url = "pyamqp://recs:s3cret-pw@rabbitmq:5672/recs"
    monkeypatch.setenv("RECS_CELERY_BROKER_URL", secret_url)
    monkeypatch.setenv("RECS_CELERY_QUEUE", "recs-sites")
    definitions = build_celery_definitions(
        [site_config("celerysite", tmp_path / "landing")],
        str(tmp_path / "lake"),
        f"sqlite:///{tmp_path / 'recs.sqlite'}",
    )
    job = definitions.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "recs_celery"
    assert "s3cret-pw" not in serialize_value(job.get_job_snapshot())
    # An execution block in a run config is ignored: the executor's config is fixed.
    schema = job.executor_def.config_schema
    assert isinstance(schema, ConfiguredDefinitionConfigSchema)
    resolved = schema.resolve_config({"config": {"broker": "pyamqp://elsewhere//"}})
    assert resolved.success and isinstance(resolved.value, dict)
    assert resolved.value["config"]["broker"] == secret_url
    assert resolved.value["config"]["config_source"] == {"task_default_queue": "recs-sites"}
    assert resolved.value["config"]["backend"] == "rpc://"
    # Every job of the location (the sites' scheduled and sensor jobs too) runs on Celery.
    for named in definitions.get_repository_def().get_all_jobs():
        assert named.executor_def.name == "recs_celery", named.name


# --- ECS ------------------------------------------------------------------------------------


def test_ecs_run_launcher_starts_one_fargate_task_per_run(
    tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher of deploy/ecs/dagster.yaml, against moto's ECS: one task for a run."""
    import boto3
    from moto import mock_aws
    from moto.ecs.models import EC2ContainerServiceBackend

    # moto sums container-level memory to place a task; Fargate task definitions (and the
    # launcher's) size the task instead. Placement is not what is tested here.
    monkeypatch.setattr(
        EC2ContainerServiceBackend,
        "_calculate_task_resource_requirements",
        staticmethod(lambda _definition: {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}),
    )
    config = _instance_config(DEPLOY / "ecs" / "dagster.yaml", tmp_path)
    section = config["run_launcher"]
    with mock_aws():
        ecs = boto3.client("ecs", region_name="us-east-1")
        ecs.create_cluster(clusterName="recs")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="recs-runs", Description="runs", VpcId=vpc)
        # Outside ECS there is no current task to copy the cluster and network from: name them.
        launcher = _build(
            section,
            use_current_ecs_task_config=False,
            run_task_kwargs={
                "cluster": "recs",
                "launchType": "FARGATE",
                "networkConfiguration": {
                    "awsvpcConfiguration": {
                        "subnets": [subnet],
                        "securityGroups": [group["GroupId"]],
                        "assignPublicIp": "DISABLED",
                    }
                },
            },
        )
        from dagster_aws.ecs import EcsRunLauncher

        assert isinstance(launcher, EcsRunLauncher)
        with dg.instance_for_test() as instance:
            launcher.register_instance(instance)
            run = _add_run(instance, "demo")
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
            tags = instance.get_run_by_id(run.run_id).tags  # type: ignore[union-attr]

        tasks = ecs.describe_tasks(cluster="recs", tasks=[tags["ecs/task_arn"]], include=["TAGS"])[
            "tasks"
        ]
        assert len(tasks) == 1
        task = tasks[0]
        override = task["overrides"]["containerOverrides"][0]
        assert override["name"] == "run"
        assert override["command"][:5] == EXECUTE_RUN
        assert {"key": "recs/site", "value": "demo"} in task["tags"]

        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])[
            "taskDefinition"
        ]
        assert definition["family"].startswith("recs-run")
        assert definition["requiresCompatibilities"] == ["FARGATE"]
        assert (definition["cpu"], definition["memory"]) == ("2048", "8192")
        assert definition["taskRoleArn"] == ECS_ENV["RECS_ECS_TASK_ROLE_ARN"]
        assert definition["executionRoleArn"] == ECS_ENV["RECS_ECS_EXECUTION_ROLE_ARN"]
        container = definition["containerDefinitions"][0]
        assert container["image"] == IMAGE
        assert container["logConfiguration"]["options"]["awslogs-group"] == "/recs/runs"
        environment = {item["name"]: item["value"] for item in container["environment"]}
        assert environment["RECS_LAKE_URL"] == ECS_ENV["RECS_LAKE_URL"]
        assert environment["OPENBLAS_NUM_THREADS"] == "1"
        # The secrets reach the container as Secrets Manager references, never as values.
        secrets = {item["name"]: item["valueFrom"] for item in container["secrets"]}
        assert secrets == {
            "DAGSTER_PG_PASSWORD": ECS_ENV["RECS_ECS_PG_PASSWORD_SECRET_ARN"],
            "RECS_DATABASE_URL": ECS_ENV["RECS_ECS_DATABASE_URL_SECRET_ARN"],
        }
        assert ECS_ENV["DAGSTER_PG_PASSWORD"] not in str(definition) + str(task)


# --- Kubernetes -----------------------------------------------------------------------------


class RecordingBatchApi:
    """Stands in for kubernetes' BatchV1Api: keeps the Jobs the launcher submits."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, Any]] = []

    def create_namespaced_job(self, body: Any, namespace: str, **_: Any) -> Any:
        self.jobs.append((namespace, body))
        return body


def _kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig naming a cluster nobody listens on: the client is built, never used."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "x"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    return path


def _k8s_launcher(config: Mapping[str, Any], tmp_path: Path, batch: RecordingBatchApi) -> Any:
    from dagster_k8s import K8sRunLauncher

    # In the cluster the launcher reads the pod's service account; here a dead kubeconfig.
    value = {
        **config,
        "load_incluster_config": False,
        "kubeconfig_file": str(_kubeconfig(tmp_path)),
    }
    processed = _processed(K8sRunLauncher.config_type(), value)
    return K8sRunLauncher(k8s_client_batch_api=batch, **processed)


def _submitted_job(launcher: RunLauncher, batch: RecordingBatchApi) -> tuple[str, Any]:
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        run = _add_run(instance, "demo")
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert len(batch.jobs) == 1
    return batch.jobs[0]


def test_k8s_run_launcher_submits_one_job_per_run(tmp_path: Path) -> None:
    config = _instance_config(DEPLOY / "k8s" / "dagster.yaml", tmp_path)
    batch = RecordingBatchApi()
    launcher = _k8s_launcher(config["run_launcher"]["config"], tmp_path, batch)
    namespace, job = _submitted_job(launcher, batch)
    assert namespace == "recs"
    spec = job.spec.template.spec
    container = spec.containers[0]
    assert container.image == IMAGE
    assert container.args[:5] == EXECUTE_RUN
    config_maps = [
        source.config_map_ref.name for source in container.env_from if source.config_map_ref
    ]
    assert config_maps == ["recs-env"]
    assert {source.secret_ref.name for source in container.env_from if source.secret_ref} == {
        "recs-secrets"
    }
    env = {item.name: item for item in container.env}
    assert env["OPENBLAS_NUM_THREADS"].value == "1"
    assert env["DAGSTER_HOME"].value == "/opt/dagster/dagster_home"
    # The instance database's password from its Secret, never as a value.
    password = env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref
    assert (password.name, password.key) == ("dagster-postgresql-secret", "postgresql-password")
    assert container.resources.requests == {"cpu": "2", "memory": "6Gi"}
    assert container.resources.limits == {"memory": "8Gi"}
    assert spec.security_context.run_as_user == 10001 and spec.security_context.run_as_non_root
    assert spec.service_account_name == "recs-dagster"
    assert job.spec.ttl_seconds_after_finished == 86400
    assert job.metadata.labels["app.kubernetes.io/part-of"] == "recs-pipeline"


# The K8sRunLauncher settings of the chart (runLauncher.config.k8sRunLauncher) and the launcher
# config field each becomes in the instance the chart renders.
HELM_TO_LAUNCHER = {
    "image": "job_image",
    "imagePullPolicy": "image_pull_policy",
    "jobNamespace": "job_namespace",
    "loadInclusterConfig": "load_incluster_config",
    "kubeconfigFile": "kubeconfig_file",
    "envConfigMaps": "env_config_maps",
    "envSecrets": "env_secrets",
    "envVars": "env_vars",
    "volumeMounts": "volume_mounts",
    "volumes": "volumes",
    "labels": "labels",
    "failPodOnRunFailure": "fail_pod_on_run_failure",
    "resources": "resources",
    "schedulerName": "scheduler_name",
    "securityContext": "security_context",
    "runK8sConfig": "run_k8s_config",
}
RUN_K8S_CONFIG = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}
# Top-level sections of the Dagster chart's values (its schema's properties).
CHART_SECTIONS = {
    "global",
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "retention",
    "additionalInstanceConfig",
}


def _launcher_config_from_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """What the chart's instance template passes to the K8sRunLauncher (the settings renamed,
    the names of the env sources, the fields it always fills in) for the release `dagster`."""
    settings = values["runLauncher"]["config"]["k8sRunLauncher"]
    unknown = set(settings) - set(HELM_TO_LAUNCHER)
    assert not unknown, f"not K8sRunLauncher settings of the chart: {unknown}"
    config = {HELM_TO_LAUNCHER[name]: value for name, value in settings.items()}
    config["env_config_maps"] = [item["name"] for item in settings.get("envConfigMaps", [])]
    config["env_secrets"] = [item["name"] for item in settings.get("envSecrets", [])]
    if "runK8sConfig" in settings:
        assert set(settings["runK8sConfig"]) <= set(RUN_K8S_CONFIG)
        config["run_k8s_config"] = {
            RUN_K8S_CONFIG[name]: value for name, value in settings["runK8sConfig"].items()
        }
    return {
        **config,
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "dagster_home": "/opt/dagster/dagster_home",
        "service_account_name": values["global"]["serviceAccountName"],
    }


def test_helm_values_are_the_instance_file(tmp_path: Path) -> None:
    from dagster_k8s import K8sRunLauncher

    values = _yaml(DEPLOY / "k8s" / "values.yaml")
    assert set(values) <= CHART_SECTIONS, set(values) - CHART_SECTIONS
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    instance = _instance_config(DEPLOY / "k8s" / "dagster.yaml", tmp_path)
    from_values = _processed(K8sRunLauncher.config_type(), _launcher_config_from_values(values))
    from_file = _processed(K8sRunLauncher.config_type(), instance["run_launcher"]["config"])
    # The same launcher either way, once the k8s objects' keys are read as the launcher reads
    # them (camelCase or snake_case).
    batch_values, batch_file = RecordingBatchApi(), RecordingBatchApi()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, job_values = _submitted_job(
        _k8s_launcher(from_values, tmp_path / "a", batch_values), batch_values
    )
    _, job_file = _submitted_job(_k8s_launcher(from_file, tmp_path / "b", batch_file), batch_file)
    for job in (job_values, job_file):
        job.metadata.name = job.spec.template.metadata.name = "run"
        for key in ("dagster/run-id",):
            job.metadata.labels.pop(key)
            job.spec.template.metadata.labels.pop(key)
        job.spec.template.spec.containers[0].args = []
    assert job_values.to_dict() == job_file.to_dict()

    # The rest of the instance: storage, queue, per-site pools, monitoring, logs.
    postgres = instance["storage"]["postgres"]["postgres_db"]
    chart_pg = values["postgresql"]
    assert not chart_pg["enabled"] and not values["generatePostgresqlPasswordSecret"]
    assert (postgres["hostname"], postgres["username"], postgres["db_name"]) == (
        chart_pg["postgresqlHost"],
        chart_pg["postgresqlUsername"],
        chart_pg["postgresqlDatabase"],
    )
    assert postgres["port"] == chart_pg["service"]["port"]
    assert postgres["scheme"] == chart_pg["postgresqlScheme"]
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["enabled"] and queue["type"] == "QueuedRunCoordinator"
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # The limits only under concurrency (Dagster refuses them in both places).
    assert not queue["config"]["queuedRunCoordinator"]
    assert (
        values["additionalInstanceConfig"]["concurrency"]
        == _yaml(DEPLOY / "k8s" / "dagster.yaml")["concurrency"]
    )
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["startTimeoutSeconds"] == instance["run_monitoring"]["start_timeout_seconds"]
    logs = values["computeLogManager"]
    assert logs["type"] == "S3ComputeLogManager"
    assert logs["config"]["s3ComputeLogManager"] == {
        "bucket": instance["compute_logs"]["config"]["bucket"],
        "prefix": instance["compute_logs"]["config"]["prefix"],
        "uploadInterval": instance["compute_logs"]["config"]["upload_interval"],
    }
    # The user deployment serves a module that exists in the image.
    deployment = values["dagster-user-deployments"]["deployments"][0]
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    import importlib.util

    assert importlib.util.find_spec(module) is not None
    assert importlib.util.find_spec("recs_pipeline.scaling.k8s_defs") is not None


def test_k8s_job_executor_location_uses_dagster_k8s() -> None:
    """``recs_pipeline.scaling``'s K8s variant: the same graph, steps as Kubernetes jobs."""
    from dagster_k8s import k8s_job_executor

    from recs_pipeline.scaling import recs_k8s_job_executor

    assert recs_k8s_job_executor() is k8s_job_executor
