"""The Kubernetes manifests (deploy/k8s), checked without a cluster (none runs here).

What can be proven offline: the kustomization renders (with the small renderer below, compared
with the real kustomize when a `kubectl` is on PATH); every built-in object is valid against
the Kubernetes 1.30 OpenAPI schemas in strict mode (kubernetes-validate: unknown fields, wrong
types and missing required fields fail); the Dask operator's objects fit the CRD's structure
and their pod and Service specs the Kubernetes schemas; the flow-run Job of the Prefect work
pool's template is a valid Job; the settings are Compose's names and values; the references
between objects resolve; Triton's pod, Service and HPA are what the issue asks for.

Not checked, because it needs a cluster: that the API server admits the objects (admission
webhooks, quotas, storage classes), that the images pull and the pods start, the operators'
and prometheus-adapter's behaviour, the worker image's tag on Docker Hub, and the HPA scaling.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prefect.settings import Settings as PrefectSettings
from prefect.settings.legacy import _get_settings_fields

from helpers import read_env_file, settings_env_names

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COPIES = K8S / "files"  # verbatim copies of repository files, at their repository paths
KUBERNETES_VERSION = "1.30"
NAMESPACE = "genreops"
APP_IMAGE_NAME = "genreops-app"
WORKER_IMAGE_NAME = "prefecthq/prefect"
WORK_POOL_TEMPLATE = K8S / "config" / "base-job-template.json"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
CRD_KINDS = {"DaskCluster", "DaskAutoscaler"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
# Settings the Kubernetes pods set that Compose does not: the Kubernetes work pool (Compose's
# worker uses the default process pool) and the Prefect options of a worker started by
# `prefect worker start` itself (genreops.flows.deployments sets them in Compose).
K8S_ONLY_NAMES = {
    "GENREOPS_WORK_POOL",
    "GENREOPS_WORK_POOL_TYPE",
    "PREFECT_WORKER_QUERY_SECONDS",
    "PREFECT_WORKER_WEBSERVER_HOST",
    "PREFECT_WORKER_WEBSERVER_PORT",
}
SECRET_EXAMPLE = ROOT / "docker_env" / "secrets.env.example"
KEY_REFS = (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret"))

# --- a renderer of the kustomize subset kustomization.yaml keeps to ----------------------------


def generated_data(base: Path, generator: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    for env in generator.get("envs", []):
        data.update(read_env_file(base / env))
    for item in generator.get("files", []):
        key, sep, source = item.partition("=")
        path = base / (source if sep else key)
        data[key if sep else path.name] = path.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return data


def render(base: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize base` prints, for the subset of kustomize this supports;
    anything else in the kustomization fails rather than being ignored."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    known = {
        "apiVersion", "kind", "namespace", "resources", "generatorOptions",
        "configMapGenerator", "secretGenerator",
    }  # fmt: skip
    assert set(kustomization) <= known, f"unsupported: {set(kustomization) - known}"
    assert kustomization["generatorOptions"] == {"disableNameSuffixHash": True}
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        objects.extend(doc for doc in yaml.safe_load_all((base / resource).read_text()) if doc)
    for generator in kustomization.get("configMapGenerator", []):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": generated_data(base, generator),
            }
        )
    for generator in kustomization.get("secretGenerator", []):
        data = generated_data(base, generator)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": generator["name"]},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


# --- what the checks read ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    rendered = render(K8S)
    keys = [key(obj) for obj in rendered]
    assert len(keys) == len(set(keys)), "two objects with the same kind and name"
    return rendered


@pytest.fixture(scope="module")
def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {key(obj): obj for obj in objects}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yaml as written (merge keys resolved, nothing interpolated)."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    return loaded


def fill_template(value: Any, variables: dict[str, Any]) -> Any:
    """Prefect's job-template placeholders with the variables' defaults: a whole-string
    placeholder takes the value (any type), one inside a string its text; None drops the key."""
    if isinstance(value, dict):
        filled = {k: fill_template(v, variables) for k, v in value.items()}
        return {k: v for k, v in filled.items() if v is not None}
    if isinstance(value, list):
        return [fill_template(v, variables) for v in value]
    if isinstance(value, str):
        whole = re.fullmatch(r"\{\{ *(\w+) *\}\}", value)
        if whole:
            return variables.get(whole.group(1))
        return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: str(variables.get(m.group(1), "")), value)
    return value


def flow_run_job() -> dict[str, Any]:
    """The Job the Kubernetes worker creates for a flow run, from the work pool's template
    (variables at their defaults; `name` as the worker sets it)."""
    template = json.loads(WORK_POOL_TEMPLATE.read_text())
    properties = template["variables"]["properties"]
    variables = {name: spec.get("default") for name, spec in properties.items()}
    variables.update(name="flow-run", labels={}, annotations={})
    job: dict[str, Any] = fill_template(template["job_configuration"]["job_manifest"], variables)
    return job


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, str], dict]]:
    """(owner, pod labels, pod spec) of every pod the manifests make, with the labels the Dask
    operator gives its pods, and the flow-run pods of the Prefect work pool."""
    for obj in objects:
        kind, name = key(obj)
        if kind in {"Deployment", "StatefulSet", "Job"}:
            template = obj["spec"]["template"]
            yield f"{kind}/{name}", template["metadata"].get("labels", {}), template["spec"]
        elif kind == "DaskCluster":
            for component in ("scheduler", "worker"):
                labels = {"dask.org/cluster-name": name, "dask.org/component": component}
                yield f"{kind}/{name}/{component}", labels, obj["spec"][component]["spec"]
    job = flow_run_job()
    template = job["spec"]["template"]
    yield "work pool flow run", template["metadata"]["labels"], template["spec"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def image_name(image: str) -> str:
    return image.rpartition(":")[0]


def container_env_names(container: dict[str, Any], by_key: dict[tuple[str, str], Any]) -> set:
    """The names a container's environment holds: env entries and the keys of envFrom maps."""
    names = {entry["name"] for entry in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source["secretRef"]
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        names.update(by_key[kind, ref["name"]]["data"])
    return names


# --- the checks --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl (kustomize) on PATH")
def test_the_renderer_agrees_with_kustomize(objects: list[dict[str, Any]]) -> None:
    """Where a kubectl is installed, its kustomize renders exactly the same objects."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = {key(obj): obj for obj in yaml.safe_load_all(result.stdout) if obj}
    assert theirs == {key(obj): obj for obj in objects}


def test_built_in_objects_are_valid_in_strict_mode(objects: list[dict[str, Any]]) -> None:
    """Every object of a Kubernetes kind fits its 1.30 schema: required fields, types, enums,
    and no field the API does not know (strict). The CRD kinds have no schema there."""
    checked = 0
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{key(obj)}: {error.message} at {list(error.path)}")
        checked += 1
    assert checked >= 40, checked


# The DaskCluster and DaskAutoscaler CRDs of the dask-kubernetes operator (customresources/
# templates.yaml, daskautoscaler.yaml), written down: what is required and of which type; the
# pod and Service specs, a $ref to Kubernetes' own PodSpec/ServiceSpec there, are validated
# against those schemas below. Defaults, descriptions and status are left out.
DASK_SCHEMAS: dict[str, dict[str, Any]] = {
    "DaskCluster": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"},
            "spec": {
                "type": "object",
                "required": ["scheduler", "worker"],
                "additionalProperties": False,
                "properties": {
                    "idleTimeout": {"type": "integer"},
                    "worker": {
                        "type": "object",
                        "required": ["spec"],
                        "additionalProperties": False,
                        "properties": {
                            "replicas": {"type": "integer", "minimum": 0},
                            "spec": {"type": "object"},
                        },
                    },
                    "scheduler": {
                        "type": "object",
                        "required": ["spec", "service"],
                        "additionalProperties": False,
                        "properties": {
                            "spec": {"type": "object"},
                            "service": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
    "DaskAutoscaler": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"},
            "spec": {
                "type": "object",
                "required": ["cluster", "minimum", "maximum"],
                "additionalProperties": False,
                "properties": {
                    "cluster": {"type": "string"},
                    "minimum": {"type": "integer", "minimum": 0},
                    "maximum": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}


def test_dask_objects_fit_the_operator_crds(by_key: dict[tuple[str, str], Any]) -> None:
    cluster = by_key["DaskCluster", "dask"]
    autoscaler = by_key["DaskAutoscaler", "dask"]
    for obj in (cluster, autoscaler):
        jsonschema.validate(obj, DASK_SCHEMAS[obj["kind"]])
    assert autoscaler["spec"]["cluster"] == "dask"
    assert autoscaler["spec"]["minimum"] <= autoscaler["spec"]["maximum"]
    meta = {"name": "dask", "namespace": NAMESPACE}
    for component in ("scheduler", "worker"):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
        kubernetes_validate.validate(
            {**pod, "spec": cluster["spec"][component]["spec"]}, KUBERNETES_VERSION, strict=True
        )
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta}
    kubernetes_validate.validate(
        {**service, "spec": cluster["spec"]["scheduler"]["service"]}, KUBERNETES_VERSION, True
    )


def test_the_extraction_cluster_is_composes(by_key: dict, compose: dict[str, Any]) -> None:
    """The operator names the scheduler's Service `<cluster>-scheduler`: the cluster's name
    makes it Compose's host name, which GENREOPS_DASK_ADDRESS names; the processes are
    Compose's (one thread each)."""
    app_env = by_key["ConfigMap", "genreops-app"]["data"]
    assert app_env["GENREOPS_DASK_ADDRESS"] == "tcp://dask-scheduler:8786"
    cluster = by_key["DaskCluster", "dask"]
    assert f"{cluster['metadata']['name']}-scheduler" == "dask-scheduler"
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]["command"]
    assert scheduler == compose["services"]["dask-scheduler"]["command"]
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]["command"]
    assert worker[:2] == ["dask", "worker"] and worker[worker.index("--nthreads") + 1] == "1"


def test_the_flow_run_job_is_a_valid_job(by_key: dict[tuple[str, str], Any]) -> None:
    """The work pool's template gives a valid Job of the app image with the app's settings and
    GENREOPS_HOME. Prefect's worker insists on parallelism/completions inside the pod spec
    (prefect-kubernetes' base manifest; the API server drops them): kept, and removed here."""
    job = flow_run_job()
    pod_spec = job["spec"]["template"]["spec"]
    assert (pod_spec.pop("parallelism"), pod_spec.pop("completions")) == (1, 1)
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert job["metadata"]["namespace"] == NAMESPACE
    container = pod_spec["containers"][0]
    assert image_name(container["image"]) == APP_IMAGE_NAME
    assert {"configMapRef": {"name": "genreops-app"}} in container["envFrom"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    home = volumes[mounts[by_key["ConfigMap", "genreops-app"]["data"]["GENREOPS_HOME"]]]
    assert home["persistentVolumeClaim"]["claimName"] == "genreops-home"
    assert ("ServiceAccount", pod_spec["serviceAccountName"]) in by_key


def test_the_work_pool_is_the_workers_and_registrations(by_key: dict) -> None:
    register = by_key["Job", "prefect-register"]["spec"]["template"]["spec"]
    create_pool = register["initContainers"][0]["command"]
    env = {e["name"]: e.get("value") for e in register["containers"][0]["env"]}
    assert env["GENREOPS_WORK_POOL_TYPE"] == "kubernetes"
    pool = env["GENREOPS_WORK_POOL"]
    assert create_pool[:5] == ["prefect", "work-pool", "create", pool, "--type"]
    worker = by_key["Deployment", "prefect-worker"]["spec"]["template"]["spec"]
    command = worker["containers"][0]["command"]
    assert command[command.index("--pool") + 1] == pool
    assert command[command.index("--type") + 1] == "kubernetes"
    # the worker may create the flow runs' Jobs in the namespace
    binding = by_key["RoleBinding", "prefect-worker"]
    assert binding["subjects"][0]["name"] == worker["serviceAccountName"]
    rules = by_key["Role", binding["roleRef"]["name"]]["rules"]
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in rules)


def test_copied_files_are_the_repositorys() -> None:
    """files/ mirrors the repository's own settings and configs (kustomize reads nothing
    outside deploy/k8s): a copy that fell behind its original fails here."""
    copies = sorted(p for p in COPIES.rglob("*") if p.is_file())
    assert len(copies) >= 10
    for copy_path in copies:
        original = ROOT / copy_path.relative_to(COPIES)
        assert original.is_file(), f"{copy_path} copies nothing: {original} is gone"
        assert copy_path.read_bytes() == original.read_bytes(), (
            f"{copy_path} is behind: cp {original.relative_to(ROOT)} {copy_path.relative_to(ROOT)}"
        )


def test_app_containers_use_composes_setting_names(
    objects: list[dict[str, Any]], by_key: dict, compose: dict[str, Any]
) -> None:
    """Compose's app.env is the app ConfigMap (same names); every GENREOPS_*/PREFECT_* name a
    container is given is one Compose gives (or a listed Kubernetes-only one), and one that
    genreops' Settings or Prefect reads."""
    compose_app_env = read_env_file(ROOT / "docker_env" / "app.env")
    assert by_key["ConfigMap", "genreops-app"]["data"] == compose_app_env
    compose_names = set()
    for service in compose["services"].values():
        compose_names.update(service.get("environment", {}))
        for env_file in service.get("env_file", []):
            compose_names.update(read_env_file(ROOT / env_file))
    known = settings_env_names() | set(_get_settings_fields(PrefectSettings))
    seen = set()
    for owner, _, pod_spec in pod_templates(objects):
        for container in containers(pod_spec):
            if image_name(container["image"]) not in {APP_IMAGE_NAME, WORKER_IMAGE_NAME}:
                continue
            names = {
                n
                for n in container_env_names(container, by_key)
                if n.startswith(("GENREOPS_", "PREFECT_"))
            }
            assert names <= compose_names | K8S_ONLY_NAMES, (
                f"{owner}/{container['name']}: not Compose's names: "
                f"{sorted(names - compose_names - K8S_ONLY_NAMES)}"
            )
            assert names <= known, f"{owner}: names nobody reads: {sorted(names - known)}"
            seen |= names
    assert {n for n in compose_app_env if n.startswith(("GENREOPS_", "PREFECT_"))} <= seen
    assert seen >= K8S_ONLY_NAMES, f"unused: {sorted(K8S_ONLY_NAMES - seen)}"


def test_secrets_carry_only_the_example_values(objects: list[dict[str, Any]]) -> None:
    example = read_env_file(SECRET_EXAMPLE)
    generated = [obj for obj in objects if obj["kind"] == "Secret"]
    assert generated
    for secret in generated:
        assert "stringData" not in secret
        for name, encoded in secret["data"].items():
            assert name in example, f"{name}: not a name of {SECRET_EXAMPLE.name}"
            value = base64.b64decode(encoded).decode()
            assert value == example[name], f"{name}: not the example's value"


def test_triton_pod_loads_models_and_serves_on_cpu(by_key: dict, compose: dict) -> None:
    deployment = by_key["Deployment", "triton"]
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["command"] == compose["services"]["triton"]["command"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    shm = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/live"
    # model loading: at least 5 minutes before the kubelet gives up
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 300
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    resources = container["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
    assert not any("gpu" in name for name in resources["limits"])
    # CPU instance groups: every model's (the ensemble has none of its own)
    kinds = [
        kind
        for config in (ROOT / "triton_models").glob("*/config.pbtxt")
        for kind in re.findall(r"kind: *(\w+)", config.read_text())
    ]
    assert kinds and set(kinds) == {"KIND_CPU"}, kinds
    service = by_key["Service", "triton"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


def test_triton_scales_on_the_adapters_queue_time_metric(by_key: dict) -> None:
    hpa = by_key["HorizontalPodAutoscaler", "triton"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "triton")
    assert (target["kind"], target["name"]) in by_key
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    (rule,) = [r for r in rules if r["name"]["as"] == name]
    # per pod, from Triton's queue-time counter, the labels Prometheus puts on Triton's series
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    prometheus = yaml.safe_load(by_key["ConfigMap", "prometheus"]["data"]["prometheus.yml"])
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "triton"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod"} <= targets


def test_prometheus_has_composes_jobs(by_key: dict) -> None:
    """Same job names as Compose (alerts.yml and the dashboard select on them), but node: the
    cluster's own node-exporter is not ours to scrape."""
    compose_config = yaml.safe_load(
        (ROOT / "configs/prometheus/prometheus.compose.yml").read_text()
    )
    ours = yaml.safe_load(by_key["ConfigMap", "prometheus"]["data"]["prometheus.yml"])
    names = {j["job_name"] for j in ours["scrape_configs"]}
    assert names == {j["job_name"] for j in compose_config["scrape_configs"]} - {"node"}
    assert ours["rule_files"] == ["alerts.yml"]
    assert "alerts.yml" in by_key["ConfigMap", "prometheus"]["data"]


def test_every_service_selects_pods_and_their_ports(objects: list[dict[str, Any]]) -> None:
    pods = list(pod_templates(objects))
    services = [obj for obj in objects if obj["kind"] == "Service"]
    for obj in objects:
        if obj["kind"] == "DaskCluster":
            scheduler_service = obj["spec"]["scheduler"]["service"]
            services.append({"metadata": {"name": "dask-scheduler"}, "spec": scheduler_service})
    for service in services:
        selector = service["spec"]["selector"]
        matching = [p for p in pods if selector.items() <= p[1].items()]
        assert matching, f"Service {service['metadata']['name']} selects no pod"
        for _, _, pod_spec in matching:
            named = {p["name"] for c in pod_spec["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in named, f"{service['metadata']['name']}: {port}"


def test_every_reference_resolves(objects: list[dict[str, Any]], by_key: dict) -> None:
    """ConfigMaps, Secrets and their keys, claims and service accounts a pod names exist."""
    claims = {name for kind, name in by_key if kind == "PersistentVolumeClaim"}
    for owner, _, pod_spec in pod_templates(objects):
        for container in containers(pod_spec):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source["secretRef"]
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (kind, ref["name"]) in by_key, f"{owner}: {kind} {ref['name']}"
            for entry in container.get("env", []):
                for ref_kind, kind in KEY_REFS:
                    ref = entry.get("valueFrom", {}).get(ref_kind)
                    if ref:
                        data = by_key[kind, ref["name"]]["data"]
                        assert ref["key"] in data, f"{owner}: {kind} {ref['name']}/{ref['key']}"
        volumes = pod_spec.get("volumes", [])
        named = {v["name"] for v in volumes}
        for volume in volumes:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in by_key, owner
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in by_key, owner
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, owner
        for container in containers(pod_spec):
            for mount in container.get("volumeMounts", []):
                # a StatefulSet's claim templates are checked below
                assert mount["name"] in named or owner.startswith("StatefulSet"), owner
        account = pod_spec.get("serviceAccountName")
        assert account is None or ("ServiceAccount", account) in by_key, owner
    for obj in objects:
        if obj["kind"] == "StatefulSet":
            spec = obj["spec"]
            named = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
            named |= {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
            for container in containers(spec["template"]["spec"]):
                assert {m["name"] for m in container["volumeMounts"]} <= named
        if obj["kind"] == "RoleBinding":
            assert ("Role", obj["roleRef"]["name"]) in by_key
            for subject in obj["subjects"]:
                assert ("ServiceAccount", subject["name"]) in by_key
                assert subject["namespace"] == NAMESPACE


def test_images_are_pinned_to_composes_tags(objects: list[dict[str, Any]], compose: dict) -> None:
    compose_tags = {
        image_name(s["image"]): s["image"] for s in compose["services"].values() if "image" in s
    }
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    prefect_version = re.search(r"^prefect==(\S+)$", lock, re.M)
    assert prefect_version
    images = [c["image"] for _, _, spec in pod_templates(objects) for c in containers(spec)]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "@" not in name, image
        if name == WORKER_IMAGE_NAME:
            # Prefect's image with prefect-kubernetes, the lock file's Prefect
            assert tag.startswith(f"{prefect_version.group(1)}-python3.11-"), image
        else:
            assert compose_tags.get(name) == image, (
                f"{image}: Compose runs {compose_tags.get(name)}"
            )
    assert {image_name(i) for i in images} >= {APP_IMAGE_NAME, WORKER_IMAGE_NAME}


def test_nothing_is_exposed_outside_the_cluster(objects: list[dict[str, Any]]) -> None:
    """ClusterIP Services only (Compose binds 127.0.0.1): reach them with kubectl port-forward."""
    assert not [obj for obj in objects if obj["kind"] == "Ingress"]
    for obj in objects:
        if obj["kind"] == "Service":
            assert obj["spec"].get("type") == "ClusterIP", key(obj)
            assert not any("nodePort" in p for p in obj["spec"]["ports"]), key(obj)
    for owner, _, pod_spec in pod_templates(objects):
        assert not pod_spec.get("hostNetwork"), owner
        for container in containers(pod_spec):
            assert not any("hostPort" in p for p in container.get("ports", [])), owner


def test_every_object_is_labelled_and_namespaced(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] not in CLUSTER_SCOPED:
            assert meta["namespace"] == NAMESPACE, key(obj)
        if obj["kind"] not in {"ConfigMap", "Secret"}:
            assert meta["labels"]["app.kubernetes.io/part-of"] == "genreops", key(obj)


def test_the_renderer_rejects_what_it_does_not_know(tmp_path: Path) -> None:
    """A kustomize feature the renderer does not implement fails, rather than rendering a
    different set of objects than `kubectl apply -k` would."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    broken = copy.deepcopy(kustomization)
    broken["patches"] = [{"path": "patch.yaml"}]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(AssertionError, match="unsupported"):
        render(tmp_path)
