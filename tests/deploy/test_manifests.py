"""deploy/: the Kubernetes manifests and the AWS Batch files are valid, agree on the shard
count, and run a command line ``layerhoist sync`` accepts.

Kubernetes manifests are checked against the API's own schemas (kubernetes-validate, strict:
an unknown field fails); the Batch job definition, the schedule and the IAM policies are sent
to moto_server, whose botocore client checks every field against the service's model and
whose IAM checks the policy grammar.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioboto3
import kubernetes_validate
import pytest
import yaml
from botocore.session import get_session
from botocore.validate import validate_parameters

from layerhoist.cli.sync import configure_parser
from layerhoist.exits import EXIT_LOCKED, EXIT_USAGE
from layerhoist.sync.config import load_config
from layerhoist.sync.shard import INDEX_VARIABLES, Shard, shard_from_environment

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BATCH = DEPLOY / "aws-batch"
#: The Kubernetes release the manifests are validated against (EKS and upstream support it).
KUBERNETES_VERSION = "1.35.0"
REGION = "eu-west-1"
#: Both deployments run nightly: a run must end before the next one starts.
DAY_SECONDS = 86_400
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
#: Variables the engines set themselves; a manifest that set them would pin every shard.
ENGINE_VARIABLES = set(INDEX_VARIABLES)
#: What sync needs on the destination repositories, per service.
ECR_ACTIONS = {
    "BatchCheckLayerAvailability",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "PutImage",
    "DescribeRepositories",
    "CreateRepository",
}
ECR_READ_ACTIONS = {"ecr": {"BatchGetImage"}, "ecr-public": {"DescribeImages", "DescribeImageTags"}}


def sync_parser() -> argparse.ArgumentParser:
    """The ``layerhoist sync`` command's own parser."""
    parser = argparse.ArgumentParser(prog="layerhoist sync", exit_on_error=False)
    configure_parser(parser)
    return parser


def sync_arguments(command: list[str], *, shard_index: int = 0) -> argparse.Namespace:
    """``layerhoist sync ARGS`` parsed as the command parses them, with Kubernetes'
    ``$(SHARD_INDEX)`` expanded as the kubelet does."""
    assert command[:2] == ["layerhoist", "sync"], command
    expanded = [part.replace("$(SHARD_INDEX)", str(shard_index)) for part in command[2:]]
    try:
        return sync_parser().parse_args(expanded)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise AssertionError(f"layerhoist sync refuses {shlex.join(expanded)}") from exc


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every document of every YAML file under deploy/kubernetes/."""
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            yield path, document


def manifest(kind: str) -> dict[str, Any]:
    """The one manifest of ``kind``."""
    (found,) = [document for _, document in manifests() if document["kind"] == kind]
    return found


def pod_spec() -> dict[str, Any]:
    """The pod template of the CronJob's Jobs."""
    spec: dict[str, Any] = manifest("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def sync_container() -> dict[str, Any]:
    """The container that runs ``layerhoist sync``."""
    (container,) = pod_spec()["containers"]
    return dict(container)


def kubernetes_command() -> list[str]:
    """The sync container's command line."""
    container = sync_container()
    return [*container["command"], *container["args"]]


def load_json(name: str) -> dict[str, Any]:
    """A file of deploy/aws-batch/, parsed."""
    document: dict[str, Any] = json.loads((BATCH / name).read_text())
    return document


def schedule_input() -> dict[str, Any]:
    """The SubmitJob request the schedule sends (its ``Input``, a JSON string)."""
    submitted: dict[str, Any] = json.loads(load_json("schedule.json")["Target"]["Input"])
    return submitted


def camel_case(value: Any) -> Any:
    """A universal target's input (``JobName``) in the API model's member names (``jobName``)."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: camel_case(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel_case(item) for item in value]
    return value


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))

    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert document["metadata"].get("namespace", "layerhoist") == "layerhoist"


def test_the_validation_refuses_a_misspelt_field() -> None:
    cronjob = manifest("CronJob")
    cronjob["spec"]["jobTemplate"]["spec"]["completionmode"] = "Indexed"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, KUBERNETES_VERSION, strict=True)


def test_one_indexed_job_of_n_shards_at_a_time() -> None:
    cronjob = manifest("CronJob")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    arguments = sync_arguments(kubernetes_command())

    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == arguments.shards
    assert arguments.shards > 1
    assert arguments.shard is None
    assert job["activeDeadlineSeconds"] < DAY_SECONDS


def test_the_command_line_is_one_sync_accepts() -> None:
    arguments = sync_arguments(kubernetes_command(), shard_index=2)

    assert str(arguments.config) == "/etc/layerhoist/sync.yaml"
    assert str(arguments.state) == "/var/cache/layerhoist/state.sqlite"
    assert str(arguments.metrics_file).endswith("-2.prom")
    assert not arguments.dry_run


def test_the_shard_index_comes_from_the_engine() -> None:
    container = sync_container()
    variables = {variable["name"]: variable for variable in container["env"]}

    assert not ENGINE_VARIABLES & set(variables)
    index = variables["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == COMPLETION_INDEX_FIELD


def test_what_sync_writes_is_on_a_writable_volume_of_its_own_shard() -> None:
    container = sync_container()
    arguments = sync_arguments(kubernetes_command())
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}

    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for written in (arguments.state, arguments.metrics_file):
        mount = mounts[str(Path(written).parent)]
        assert not mount.get("readOnly", False), written
    # Two shards never share a state file, nor a metrics file on one node.
    state = mounts[str(Path(arguments.state).parent)]
    assert "$(SHARD_INDEX)" in state["subPathExpr"]
    assert "$(SHARD_INDEX)" in container["args"][container["args"].index("--metrics-file") + 1]
    assert "emptyDir" in volumes[state["name"]]
    assert Path(arguments.metrics_file).suffix == ".prom"


def test_the_config_map_is_the_file_sync_reads(tmp_path: Path) -> None:
    arguments = sync_arguments(kubernetes_command())
    config = Path(arguments.config)
    mount = next(
        m for m in sync_container()["volumeMounts"] if m["mountPath"] == str(config.parent)
    )
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mount["name"])
    config_map = manifest("ConfigMap")
    copy = tmp_path / config.name
    copy.write_text(config_map["data"][config.name])

    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert load_config(copy, environ={}).mappings


@pytest.mark.parametrize("variable", sorted(ENGINE_VARIABLES))
def test_each_engine_index_is_one_shard(variable: str) -> None:
    shards = sync_arguments(kubernetes_command()).shards

    for index in range(shards):
        assert shard_from_environment(shards, {variable: str(index)}) == Shard(index, shards)


def test_pods_run_as_the_irsa_service_account_without_root() -> None:
    account = manifest("ServiceAccount")
    spec = pod_spec()
    context = sync_container()["securityContext"]

    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert re.fullmatch(
        r"arn:aws:iam::\d{12}:role/.+", account["metadata"]["annotations"][IRSA_ANNOTATION]
    )
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_batch_array_job_and_schedule_agree() -> None:
    definition = load_json("job-definition.json")
    submitted = schedule_input()
    container = definition["containerProperties"]
    arguments = sync_arguments(container["command"])

    assert submitted["JobDefinition"] == definition["jobDefinitionName"]
    assert submitted["ArrayProperties"]["Size"] == arguments.shards
    assert arguments.shard is None
    assert not ENGINE_VARIABLES & {variable["name"] for variable in container["environment"]}
    assert definition["timeout"]["attemptDurationSeconds"] < DAY_SECONDS
    not_retried = {
        int(rule["onExitCode"])
        for rule in definition["retryStrategy"]["evaluateOnExit"]
        if rule["action"] == "EXIT"
    }
    assert not_retried == {EXIT_USAGE, EXIT_LOCKED}


def test_the_schedule_submits_a_valid_batch_request() -> None:
    submit_job = get_session().get_service_model("batch").operation_model("SubmitJob")

    validate_parameters(camel_case(schedule_input()), submit_job.input_shape)


@pytest.mark.anyio
@pytest.mark.usefixtures("aws_credentials")
async def test_batch_files_are_accepted_by_the_services(moto_endpoint: str) -> None:
    session = aioboto3.Session()
    options: dict[str, Any] = {"endpoint_url": moto_endpoint, "region_name": REGION}
    async with session.client("batch", **options) as batch:
        registered = await batch.register_job_definition(**load_json("job-definition.json"))
    assert registered["jobDefinitionName"] == "layerhoist-sync"
    async with session.client("scheduler", **options) as scheduler:
        await scheduler.create_schedule(**load_json("schedule.json"))
    async with session.client("iam", **options) as iam:
        for name in ("job-role-policy", "scheduler-role-policy"):
            text = (BATCH / f"{name}.json").read_text()
            await iam.create_policy(PolicyName=f"layerhoist-{name}", PolicyDocument=text)


def test_the_job_role_allows_what_sync_does_and_no_more() -> None:
    policy = load_json("job-role-policy.json")
    granted: dict[str, set[str]] = {}
    everywhere: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            if statement["Resource"] == "*":
                everywhere.add(action)
            else:
                service, name = action.split(":")
                granted.setdefault(service, set()).add(name)
                assert "repository/mirror/" in statement["Resource"]

    for service in ("ecr", "ecr-public"):
        assert granted[service] == ECR_ACTIONS | ECR_READ_ACTIONS[service]
    assert everywhere == {
        "ecr:GetAuthorizationToken",
        "ecr-public:GetAuthorizationToken",
        "sts:GetServiceBearerToken",
    }


def test_the_scheduler_role_submits_this_job_only() -> None:
    policy = load_json("scheduler-role-policy.json")
    submitted = schedule_input()
    (statement,) = policy["Statement"]

    assert statement["Action"] == "batch:SubmitJob"
    resources = statement["Resource"]
    assert any(r.endswith(f":job-queue/{submitted['JobQueue']}") for r in resources)
    assert any(r.endswith(f":job-definition/{submitted['JobDefinition']}") for r in resources)
