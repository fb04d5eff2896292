"""The deployment artifacts stay valid and agree with the code: topics.yaml with the topic
specs, manifests with the Kubernetes schemas, compose with the compose spec, dashboard and
alerts with the metrics WorkerMetrics exports, Prometheus config with promtool where installed.
Both layouts of the worker are checked: one process (the default) and ingest and pipeline as
separate processes (compose profile `split`, the kustomize component deploy/k8s/split).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from refstream.cli.kafka import worker as worker_command
from refstream.deploy.render_topics import TOPICS_YAML, render_topics_yaml
from refstream.streams.metrics import WorkerMetrics
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, topic_specs

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SPLIT = K8S / "split"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "refstream-dashboard.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
KUBERNETES_VERSION = "1.30.0"
METRICS_PORT = 9108
WORKER_JOB = "refstream-workers"
# Series Prometheus itself writes for every target; everything else must come from the code.
PROMETHEUS_SYNTHETIC = frozenset({"up"})
# The stages `refstream worker` can run in separate processes (`--no-ingest`,
# `--no-pipeline`); a worker with neither flag runs both in one process.
STAGES = ("ingest", "pipeline")


def need(module: str, why: str) -> Any:
    """A dev dependency the validation needs; its absence fails the test, never skips it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{module} is not installed but {why}; install the dev extras "
                    "(`make install`, or pip install -r requirements.lock)", pytrace=False)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus); the "
                    "structural Prometheus checks ran without it")
    return found


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)


# ------------------------------------------------------------------------ metric names


def exported_metric_names() -> set[str]:
    """Every series name a worker's /metrics can show, from WorkerMetrics' own registry."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created")}
    names: set[str] = set()
    for family in WorkerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


_NOT_METRICS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring",
                          "group_left", "group_right", "offset", "bool", "inf", "nan", "atan2"})


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables such as $__rate_interval
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names: set[str] = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, before = match.group(0), text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the unit of a duration or the exponent of a number
        if text[match.end():].lstrip().startswith("(") or word.lower() in _NOT_METRICS:
            continue
        names.add(word)
    return names


@pytest.mark.parametrize(("expr", "expected"), [
    ('sum by (topic) (rate(refstream_events_in_total{topic!~".*\\\\.log"}[$__rate_interval]))',
     {"refstream_events_in_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(refstream_checkpoint_seconds_bucket[5m]))) > 1",
     {"refstream_checkpoint_seconds_bucket"}),
    ('absent(up{job="refstream-workers"} == 1)', {"up"}),
    ("rate(not_exported_total[1m] offset 5m) / on (instance) group_left sum(other_gauge)",
     {"not_exported_total", "other_gauge"}),
])
def test_promql_metric_names_finds_selected_series_only(expr: str, expected: set[str]) -> None:
    assert promql_metric_names(expr) == expected


def test_worker_metrics_export_the_names_the_dashboard_relies_on() -> None:
    names = exported_metric_names()
    assert {"refstream_events_in_total", "refstream_dlq_total",
            "refstream_processing_latency_seconds_bucket", "refstream_consumer_lag"} <= names


def check_metric_names(where: str, expressions: list[str]) -> None:
    known = exported_metric_names() | PROMETHEUS_SYNTHETIC
    assert expressions, f"{where}: no PromQL expressions found"
    for expr in expressions:
        used = promql_metric_names(expr)
        assert used, f"{where}: {expr!r} selects no metric"
        unknown = used - known
        assert not unknown, (f"{where}: {expr!r} uses {sorted(unknown)}, which "
                             "refstream.streams.metrics.WorkerMetrics does not export")


# ------------------------------------------------------------------------ topics.yaml


def test_topics_yaml_is_the_rendering_of_the_topic_specs() -> None:
    assert TOPICS_YAML.read_text(encoding="utf-8") == render_topics_yaml(), (
        "deploy/topics.yaml is stale: run python -m refstream.deploy.render_topics")
    document = yaml.safe_load(TOPICS_YAML.read_text(encoding="utf-8"))
    defaults = Settings.model_fields
    names = TopicNames(defaults["shop_topic_prefix"].default, defaults["topic_prefix"].default)
    specs = topic_specs(names, defaults["partitions"].default)
    assert [t["name"] for t in document["topics"]] == [s.name for s in specs]
    by_name = {t["name"]: t for t in document["topics"]}
    assert by_name[names.log]["config"]["retention.ms"] == "-1"
    assert by_name[names.log]["config"]["cleanup.policy"] == "delete"


# ------------------------------------------------------------------------ Kubernetes


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                yield path.name, document


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in k8s_documents() if d["kind"] == kind]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_objects(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


K8S_IDS = [f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in k8s_documents()]


def stages_run(args: list[str]) -> set[str]:
    """The stages a `refstream worker ...` command line runs, as the CLI itself parses it (a
    misspelled flag fails here, not in the container)."""
    assert args[0] == "worker", args
    try:
        parsed = worker_command.make_context("worker", list(args[1:])).params
    except click.ClickException:
        pytest.fail(f"refstream rejects the command line {args}", pytrace=False)
    return {stage for stage in STAGES if not parsed[f"no_{stage}"]}


@pytest.mark.parametrize("document", [d for _, d in k8s_documents()], ids=K8S_IDS)
def test_manifest_validates_against_the_kubernetes_schema(document: dict[str, Any]) -> None:
    utils = need("kubernetes_validate.utils", "it ships the Kubernetes JSON schemas")
    # strict: a misspelled field fails instead of being ignored by the API server.
    utils.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_validator_rejects_a_misspelled_field() -> None:
    utils = need("kubernetes_validate.utils", "it ships the Kubernetes JSON schemas")
    deployment = json.loads(json.dumps(one("Deployment", "refstream-worker")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(utils.ValidationError, match="livenesProbe"):
        utils.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_in_one_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "refstream"
    assert {d["metadata"].get("namespace", "refstream") for _, d in k8s_documents()
            if d["kind"] != "Namespace"} == {"refstream"}


def worker_container() -> dict[str, Any]:
    pod = one("Deployment", "refstream-worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def test_worker_deployment_has_two_replicas_probes_resources_and_scrape_annotations() -> None:
    deployment = one("Deployment", "refstream-worker")
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        template["metadata"]["labels"].items()
    container = worker_container()
    assert container["args"][0] == "worker"
    assert stages_run(container["args"]) == set(STAGES), "the base worker runs both stages"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]
    annotations = template["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true",
                           "prometheus.io/port": str(METRICS_PORT),
                           "prometheus.io/path": "/metrics"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    settings = one("ConfigMap", "refstream-settings")["data"]
    assert settings["REFSTREAM_DATA_DIR"] in mounts  # writable despite the read-only root
    env_sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert env_sources == {"refstream-settings", "refstream-secrets"}


def test_metrics_endpoint_is_reachable_by_probes_and_scrapes() -> None:
    settings = one("ConfigMap", "refstream-settings")["data"]
    # The code's default host is 127.0.0.1: kubelet probes and Prometheus could not connect.
    assert settings["REFSTREAM_METRICS_HOST"] == "0.0.0.0"
    assert int(settings["REFSTREAM_METRICS_PORT"]) == METRICS_PORT


def test_service_pdb_and_job_select_and_run_the_right_things() -> None:
    worker_labels = one("Deployment", "refstream-worker")["spec"]["template"]["metadata"][
        "labels"]
    service = one("Service", "refstream-worker-metrics")
    assert service["spec"]["selector"].items() <= worker_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": METRICS_PORT,
                                         "targetPort": "metrics", "protocol": "TCP"}]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    job = one("Job", "refstream-topics")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "create"]
    assert container["image"] == worker_container()["image"]


def test_the_topics_job_has_its_own_principal_and_the_vault_is_on() -> None:
    job = one("Job", "refstream-topics")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert "refstream-secrets" not in sources  # not the workers' Kafka user
    assert "refstream-topics-credentials" in sources
    credentials = one("Secret", "refstream-topics-credentials")["stringData"]
    assert {"REFSTREAM_SASL_USERNAME", "REFSTREAM_SASL_PASSWORD"} == set(credentials)
    # The person vault is on, on a volume every worker pod shares.
    vault = Path(one("ConfigMap", "refstream-settings")["data"]["REFSTREAM_PERSON_VAULT"])
    mounts = {m["mountPath"]: m["name"] for m in worker_container()["volumeMounts"]}
    assert str(vault.parent) in mounts
    volumes = {v["name"]: v for v in one("Deployment", "refstream-worker")["spec"]["template"][
        "spec"]["volumes"]}
    claim = volumes[mounts[str(vault.parent)]]["persistentVolumeClaim"]["claimName"]
    assert one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_secrets_hold_clearly_marked_placeholders_only() -> None:
    secrets = k8s_objects("Secret")
    assert {s["metadata"]["name"] for s in secrets} == {"refstream-secrets",
                                                        "refstream-kafka-ca",
                                                        "refstream-topics-credentials"}
    for secret in secrets:
        assert "data" not in secret, "use stringData placeholders, never encoded values"
        for key, value in secret["stringData"].items():
            assert value.startswith("CHANGE-ME"), f"{key} must be a CHANGE-ME placeholder"
    assert "REFSTREAM_PII_SECRET" in one("Secret", "refstream-secrets")["stringData"]


def settings_env_names(source: str, names: set[str]) -> None:
    unknown = sorted(n for n in names if n.startswith("REFSTREAM_")
                     and n.removeprefix("REFSTREAM_").lower() not in Settings.model_fields)
    assert not unknown, f"{source}: {unknown} are not fields of streams/settings.py Settings"


def test_every_refstream_variable_in_the_manifests_is_a_setting() -> None:
    for kind in ("ConfigMap", "Secret"):
        for document in k8s_objects(kind):
            data = document.get("data") or document.get("stringData") or {}
            settings_env_names(f"{kind} {document['metadata']['name']}", set(data))


def test_kubernetes_scrape_config_finds_annotated_worker_pods() -> None:
    config = yaml.safe_load(one("ConfigMap", "refstream-prometheus-scrape")["data"][
        "refstream-scrape.yml"])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == WORKER_JOB  # the dashboard and the alerts filter on it
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery == {"role": "pod", "namespaces": {"names": ["refstream"]}}
    keeps = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"]
             if r.get("action") == "keep"}
    assert keeps == {"__meta_kubernetes_pod_label_app_kubernetes_io_component": "worker",
                     "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"}


def test_promtool_accepts_the_kubernetes_scrape_config(tmp_path: Path) -> None:
    config = one("ConfigMap", "refstream-prometheus-scrape")["data"]["refstream-scrape.yml"]
    path = tmp_path / "prometheus.yml"
    path.write_text(config, encoding="utf-8")
    result = run_promtool("check", "config", str(path))
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool build has no Kubernetes discovery (Debian's does not); "
                    "the structural checks ran")
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------ Kubernetes, split
# deploy/k8s/split is a kustomize Component (an overlay cannot live inside its base's
# directory). split_rendering() models what it makes of the base; where kustomize or kubectl
# is installed, test_kustomize_builds_... holds the model to the real build.


def split_component() -> dict[str, Any]:
    document = yaml.safe_load((SPLIT / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def split_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(SPLIT.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                yield path.name, document


def deleted_by_split() -> set[tuple[str, str]]:
    deleted: set[tuple[str, str]] = set()
    for entry in split_component()["patches"]:
        patch = yaml.safe_load(entry["patch"])
        assert patch.pop("$patch") == "delete", f"the component only deletes: {patch}"
        # The base sets the namespace; a patch without it matches nothing (kustomize fails).
        assert patch["metadata"]["namespace"] == "refstream"
        deleted.add((patch["kind"], patch["metadata"]["name"]))
    return deleted


def topics_image() -> str:
    (container,) = one("Job", "refstream-topics")["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def split_rendering() -> list[dict[str, Any]]:
    """The base's objects less the deleted ones, plus the component's, whose Deployments take
    the topics Job's image (the component's replacements)."""
    deleted = deleted_by_split()
    rendered = [copy.deepcopy(d) for _, d in k8s_documents()
                if (d["kind"], d["metadata"]["name"]) not in deleted]
    for _, original in split_documents():
        document = copy.deepcopy(original)
        if document["kind"] == "Deployment":
            for container in document["spec"]["template"]["spec"]["containers"]:
                container["image"] = topics_image()
        rendered.append(document)
    return rendered


def only(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def stage_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def check_runs_only(deployment: dict[str, Any], stage: str) -> None:
    args = stage_container(deployment)["args"]
    assert stages_run(args) == {stage}, f"{deployment['metadata']['name']} must run only {stage}"


def check_holds_pii_secret_and_vault(deployment: dict[str, Any]) -> None:
    """Ingest pseudonymises: the PII secret and the person vault's shared claim."""
    container = stage_container(deployment)
    sources = {next(iter(s.values()))["name"] for s in container.get("envFrom", [])}
    assert {"refstream-settings", "refstream-secrets"} <= sources
    assert "REFSTREAM_PII_SECRET" in one("Secret", "refstream-secrets")["stringData"]
    vault = Path(one("ConfigMap", "refstream-settings")["data"]["REFSTREAM_PERSON_VAULT"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert str(vault.parent) in mounts, "the vault's directory is not mounted"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[str(vault.parent)]]["persistentVolumeClaim"]["claimName"]
    assert claim == "refstream-person-vault"  # the claim the one-process workers use
    assert one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def check_holds_no_pii(deployment: dict[str, Any]) -> None:
    """The pipeline reads pseudonymised events: no PII secret, no vault."""
    container = stage_container(deployment)
    sources = {next(iter(s.values()))["name"] for s in container.get("envFrom", [])}
    assert sources == {"refstream-settings"}, "the whole refstream-secrets holds the PII secret"
    secret_keys = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                   for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert secret_keys == {("refstream-secrets", "REFSTREAM_SASL_USERNAME"),
                           ("refstream-secrets", "REFSTREAM_SASL_PASSWORD")}
    assert "REFSTREAM_PII_SECRET" not in {e["name"] for e in container.get("env", [])}
    claims = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert not claims, f"the pipeline mounts {claims}: the vault is ingest's"


SPLIT_IDS = [f"split/{f}:{d['kind']}/{d['metadata']['name']}" for f, d in split_documents()]


@pytest.mark.parametrize("document", [d for _, d in split_documents()], ids=SPLIT_IDS)
def test_split_manifest_validates_against_the_kubernetes_schema(document: dict[str, Any]) -> None:
    utils = need("kubernetes_validate.utils", "it ships the Kubernetes JSON schemas")
    utils.validate(document, KUBERNETES_VERSION, strict=True)
    assert document["metadata"]["namespace"] == "refstream"


def test_split_component_replaces_only_the_one_process_worker() -> None:
    component = split_component()
    assert component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert component["kind"] == "Component"
    # Only what split_rendering models: a new field needs the model (and a test) first.
    assert set(component) <= {"apiVersion", "kind", "resources", "patches", "replacements"}
    assert set(component["resources"]) == ({p.name for p in SPLIT.glob("*.yaml")}
                                           - {"kustomization.yaml"})
    assert deleted_by_split() == {("Deployment", "refstream-worker"),
                                  ("PodDisruptionBudget", "refstream-worker")}
    (replacement,) = component["replacements"]
    assert replacement["source"] == {
        "kind": "Job", "name": "refstream-topics",
        "fieldPath": "spec.template.spec.containers.[name=topics].image"}
    targets = {(t["select"]["kind"], t["select"]["name"]): t["fieldPaths"]
               for t in replacement["targets"]}
    assert targets == {("Deployment", f"refstream-{stage}"):
                       [f"spec.template.spec.containers.[name={stage}].image"]
                       for stage in STAGES}
    for stage in STAGES:  # the names the replacement selects
        deployment = only(split_rendering(), "Deployment", f"refstream-{stage}")
        assert stage_container(deployment)["name"] == stage
    # The base does not include it: `kubectl apply -k deploy/k8s` stays one process.
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert "components" not in base
    assert not [r for r in base["resources"] if r.startswith("split")]


def test_split_runs_ingest_and_pipeline_as_two_deployments() -> None:
    documents = split_rendering()
    assert {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"} == {
        "refstream-ingest", "refstream-pipeline"}
    ingest = only(documents, "Deployment", "refstream-ingest")
    pipeline = only(documents, "Deployment", "refstream-pipeline")
    check_runs_only(ingest, "ingest")
    check_holds_pii_secret_and_vault(ingest)
    check_runs_only(pipeline, "pipeline")
    check_holds_no_pii(pipeline)
    data_dir = one("ConfigMap", "refstream-settings")["data"]["REFSTREAM_DATA_DIR"]
    for deployment in (ingest, pipeline):  # writable despite the read-only root
        assert data_dir in {m["mountPath"] for m in stage_container(deployment)["volumeMounts"]}


def test_the_stage_checks_tell_the_layouts_apart() -> None:
    documents = split_rendering()
    ingest = only(documents, "Deployment", "refstream-ingest")
    pipeline = only(documents, "Deployment", "refstream-pipeline")
    one_process = one("Deployment", "refstream-worker")
    for deployment, stage in ((pipeline, "ingest"), (ingest, "pipeline"),
                              (one_process, "ingest"), (one_process, "pipeline")):
        with pytest.raises(AssertionError, match="must run only"):
            check_runs_only(deployment, stage)
    with pytest.raises(AssertionError):
        check_holds_pii_secret_and_vault(pipeline)
    for deployment in (ingest, one_process):
        with pytest.raises(AssertionError):
            check_holds_no_pii(deployment)


@pytest.mark.parametrize("stage", STAGES)
def test_split_stage_keeps_the_base_workers_probes_scraping_and_security(stage: str) -> None:
    deployment = only(split_rendering(), "Deployment", f"refstream-{stage}")
    base = one("Deployment", "refstream-worker")
    container, base_container = stage_container(deployment), worker_container()
    for key in ("ports", "startupProbe", "livenessProbe", "readinessProbe", "securityContext"):
        assert container[key] == base_container[key], f"{key} differs from the base worker's"
    pod, base_pod = deployment["spec"]["template"]["spec"], base["spec"]["template"]["spec"]
    for key in ("securityContext", "terminationGracePeriodSeconds"):
        assert pod[key] == base_pod[key], f"{key} differs from the base worker's"
    assert deployment["spec"]["template"]["metadata"]["annotations"] == \
        base["spec"]["template"]["metadata"]["annotations"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"] == base["spec"]["strategy"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selects(selector, pod_labels(deployment))
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == selector
    # A core of its own is the point of splitting.
    assert cpu_cores(container["resources"]["requests"]["cpu"]) >= 1
    assert "memory" in container["resources"]["limits"]
    assert container["image"] == topics_image()


def test_split_pdbs_service_and_scrape_job_cover_each_stage() -> None:
    documents = split_rendering()
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    pdbs = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    service = only(documents, "Service", "refstream-worker-metrics")
    config = yaml.safe_load(only(documents, "ConfigMap", "refstream-prometheus-scrape")[
        "data"]["refstream-scrape.yml"])
    (job,) = config["scrape_configs"]
    keep = next(r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep" and
                r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"])
    for deployment in deployments:
        name, labels = deployment["metadata"]["name"], pod_labels(deployment)
        # One PDB each: a pod two PDBs select cannot be evicted at all.
        (pdb,) = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
        for other in deployments:  # Deployments that select each other's pods fight over them
            if other is not deployment:
                assert not selects(other["spec"]["selector"]["matchLabels"], labels), name
        assert selects(service["spec"]["selector"], labels), f"{name}: not behind the Service"
        assert re.fullmatch(keep, labels["app.kubernetes.io/component"]), \
            f"{name}: the scrape job {WORKER_JOB} would drop its pods"
    assert len(pdbs) == len(deployments)


def kustomize() -> list[str]:
    for tool, command in (("kustomize", ["build"]), ("kubectl", ["kustomize"])):
        found = shutil.which(tool)
        if found:
            return [found, *command]
    pytest.skip("neither kustomize nor kubectl installed; the split component was checked "
                "against its model only")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run([*kustomize(), str(directory)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_identity(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    keyed = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    assert len(keyed) == len(documents), "two objects of one kind share a name"
    return keyed


def overlay_with_split(directory: Path, **extra: Any) -> Path:
    """A kustomization of an operator's own, outside the checkout: the base plus the split."""
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, directory)],
        "components": [os.path.relpath(SPLIT, directory)], **extra}), encoding="utf-8")
    return directory


def test_kustomize_builds_the_base_as_one_process_and_the_split_as_modelled(
        tmp_path: Path) -> None:
    base = by_identity(kustomize_build(K8S))
    assert base == by_identity([d for _, d in k8s_documents()])
    split = by_identity(kustomize_build(overlay_with_split(tmp_path / "split")))
    assert split == by_identity(split_rendering())


def test_the_split_stages_follow_the_image_set_once(tmp_path: Path) -> None:
    image = {"name": "refstream", "newName": "registry.example/refstream", "newTag": "9.9.9"}
    documents = kustomize_build(overlay_with_split(tmp_path / "split", images=[image]))
    images = {c["image"] for d in documents if d["kind"] in {"Deployment", "Job"}
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example/refstream:9.9.9"}


# ------------------------------------------------------------------------ compose


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def compose_schema() -> dict[str, Any]:
    # check-jsonschema vendors the compose-spec schema (Apache-2.0, with its licence file);
    # read it as data, without importing the CLI.
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("check-jsonschema is not installed but it ships the compose-spec schema; "
                    "install the dev extras (`make install`)", pytrace=False)
    path = (Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor" /
            "compose-spec.json")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def compose_errors(document: dict[str, Any]) -> list[str]:
    jsonschema = need("jsonschema", "it validates compose.yaml against the compose spec")
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def test_compose_file_validates_against_the_compose_spec() -> None:
    assert compose_errors(compose()) == []


def test_the_compose_schema_rejects_a_misplaced_key() -> None:
    document = compose()
    document["services"]["worker"]["replicas"] = 2  # belongs under deploy:
    assert any("replicas" in error for error in compose_errors(document))


# The compose services that run `refstream worker`, and the stages each runs.
COMPOSE_WORKERS = {"worker": set(STAGES), "ingest": {"ingest"}, "pipeline": {"pipeline"}}


def test_compose_runs_kafka_topics_workers_finance_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "topics", "worker", "ingest", "pipeline",
                             "finance-tail", "prometheus", "grafana"}
    # What `docker compose up` starts without a profile: the one-process layout.
    assert {name for name, s in services.items() if not s.get("profiles")} == {
        "kafka", "topics", "worker", "finance-tail", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:3.9.")
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["command"][0] == "worker"
    assert worker["deploy"]["replicas"] >= 2
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    assert str(METRICS_PORT) in " ".join(worker["healthcheck"]["test"])
    for name in ("worker", "finance-tail"):
        assert services[name]["depends_on"]["topics"]["condition"] == \
            "service_completed_successfully"
    assert services["finance-tail"]["command"][0] == "finance-tail"
    for name in ("topics", "worker", "ingest", "pipeline", "finance-tail"):
        env = services[name]["environment"]
        settings_env_names(f"compose service {name}", set(env))
        assert env["REFSTREAM_METRICS_HOST"] == "0.0.0.0"
        assert env["REFSTREAM_METRICS_PORT"] == str(METRICS_PORT)
        if name != "pipeline":  # the one process that never sees a raw value
            assert env["REFSTREAM_PII_SECRET"].startswith("${REFSTREAM_PII_SECRET:?"), (
                "the PII secret must come from the operator, with no default")
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def compose_volumes(service: dict[str, Any]) -> dict[str, str]:
    """A service's named volumes: mount target -> volume."""
    mounts = (volume.split(":")[:2] for volume in service.get("volumes", []))
    return {target: source for source, target in mounts if not source.startswith((".", "/"))}


def test_compose_split_profile_runs_ingest_and_pipeline_as_separate_processes() -> None:
    document = compose()
    services = document["services"]
    for name, stages in COMPOSE_WORKERS.items():
        service = services[name]
        assert stages_run(service["command"]) == stages, f"{name} must run {sorted(stages)}"
        assert service.get("profiles", []) == ([] if name == "worker" else ["split"])
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
        assert str(METRICS_PORT) in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert service["stop_grace_period"] == services["worker"]["stop_grace_period"]
        assert service["deploy"]["resources"]["limits"]["cpus"] == "1.0"
        assert service["deploy"]["replicas"] >= 1
    # Compose refuses an always-on service that depends on one a profile leaves out.
    always_on = {name for name, s in services.items() if not s.get("profiles")}
    for name in always_on:
        assert set(services[name].get("depends_on", [])) <= always_on, name
    for name, service in services.items():
        for volume in compose_volumes(service).values():
            assert volume in document["volumes"], f"{name}: volume {volume} is not declared"


def test_compose_ingest_holds_the_pii_secret_and_the_vault_and_the_pipeline_neither() -> None:
    services = compose()["services"]
    worker, ingest, pipeline = (services[n] for n in ("worker", "ingest", "pipeline"))
    vault = Path(ingest["environment"]["REFSTREAM_PERSON_VAULT"])
    assert Path(worker["environment"]["REFSTREAM_PERSON_VAULT"]) == vault
    vault_volume = compose_volumes(ingest)[str(vault.parent)]
    # The same vault file whichever layout runs: switching must not lose a person's token.
    assert compose_volumes(worker)[str(vault.parent)] == vault_volume
    env = pipeline["environment"]
    assert not {"REFSTREAM_PII_SECRET", "REFSTREAM_PERSON_VAULT"} & set(env)
    assert vault_volume not in compose_volumes(pipeline).values()
    # The checkpoints outlive a container, shared by the pipeline's replicas.
    assert env["REFSTREAM_DATA_DIR"] in compose_volumes(pipeline)


def test_compose_bind_mounts_exist_and_grafana_gets_datasource_and_dashboard() -> None:
    services = compose()["services"]
    mounts: dict[str, str] = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{source} is missing"
                mounts[target] = source
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "refstream.yml").read_text(
        encoding="utf-8"))["providers"][0]
    dashboard_target = next(t for t, s in mounts.items() if s.endswith(DASHBOARD.name))
    assert Path(dashboard_target).parent == Path(provider["options"]["path"])
    datasource = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")
                                .read_text(encoding="utf-8"))["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"


# ------------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in (raw.strip() for raw in text.splitlines())
            if line and not line.startswith("#")]


def test_dockerfile_builds_from_python_311_slim_with_the_lock_and_runs_unprivileged() -> None:
    instructions = dockerfile_instructions()
    assert [a.split()[0] for i, a in instructions if i == "FROM"] == ["python:3.11-slim"] * 2
    for instruction, argument in instructions:
        if instruction == "COPY" and not argument.startswith("--from"):
            for source in argument.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert "--constraint requirements.lock" in runs
    (user,) = [a for i, a in instructions if i == "USER"]
    assert not user.startswith(("0", "root"))
    assert ("EXPOSE", str(METRICS_PORT)) in instructions
    assert ("ENTRYPOINT", '["refstream"]') in instructions
    env = " ".join(a for i, a in instructions if i == "ENV")
    assert "REFSTREAM_METRICS_HOST=0.0.0.0" in env
    assert f"REFSTREAM_METRICS_PORT={METRICS_PORT}" in env


def test_dockerfile_copies_every_package_folder() -> None:
    # pyproject maps each refstream.<room> to a top-level folder; a folder the build stage
    # does not copy fails `pip install .` inside the image ("package directory ... does not
    # exist"), which no test here would otherwise see without a Docker engine.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {argument.split()[0] for instruction, argument in dockerfile_instructions()
              if instruction == "COPY" and not argument.startswith("--from")}
    assert folders <= copied, f"COPY missing for {sorted(folders - copied)}"


# ------------------------------------------------------------------------ Prometheus


def prometheus_config() -> dict[str, Any]:
    document = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_prometheus_scrapes_every_worker_replica_of_compose() -> None:
    config = prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert WORKER_JOB in jobs
    workers = jobs[WORKER_JOB]
    assert workers.get("metrics_path", "/metrics") == "/metrics"
    (discovery,) = workers["dns_sd_configs"]
    assert discovery["names"] == ["worker"]  # the compose service: one A record per replica
    assert discovery["type"] == "A"
    assert discovery["port"] == METRICS_PORT
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_prometheus_finds_the_worker_processes_of_either_compose_layout() -> None:
    (discovery,) = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}[
        WORKER_JOB]["dns_sd_configs"]
    services = compose()["services"]
    workers = {n for n, s in services.items() if s.get("command", [""])[0] == "worker"}
    assert workers == set(COMPOSE_WORKERS)
    for name in workers:
        networks = services[name].get("networks", {})
        assert isinstance(networks, dict), f"{name}: networks as a mapping, with aliases"
        aliases = set(networks.get("default", {}).get("aliases", []))
        # A DNS name Prometheus resolves must answer with this service's containers.
        assert ({name} | aliases) & set(discovery["names"]), f"{name} would not be scraped"
        assert str(METRICS_PORT) in services[name]["expose"]


def test_alert_rules_use_only_exported_metrics() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {"RefstreamWorkerDown", "RefstreamDeadLetters"}
    check_metric_names("alerts.yml", [str(r["expr"]) for r in rules])
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    # Inside the container the rules sit at /etc/prometheus; here, next to the copy.
    config = prometheus_config()
    config["rule_files"] = ["alerts.yml"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------ Grafana


def dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"]
            for target in panel.get("targets", [])]


def test_dashboard_is_grafana_json_with_well_placed_panels() -> None:
    board = dashboard()
    assert board["uid"] == "refstream-workers" and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] and panel["title"], panel
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                   for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no queries"
        assert len({t["refId"] for t in targets}) == len(targets)
        assert all(t["expr"].strip() for t in targets)
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_queries_use_only_metrics_the_workers_export() -> None:
    check_metric_names("refstream-dashboard.json", dashboard_expressions())
    for expr in dashboard_expressions():
        if "up{" in expr:
            assert f'job="{WORKER_JOB}"' in expr, "filter `up` on the workers' scrape job"


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = [{"record": f"refstream:dashboard_query_{n}",
              "expr": expr.replace("$__rate_interval", "1m")}
             for n, expr in enumerate(dashboard_expressions())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
