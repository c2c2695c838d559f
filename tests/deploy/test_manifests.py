"""The Kubernetes manifests (deploy/k8s): every overlay renders with `kubectl kustomize`, and its
core kinds validate against the Kubernetes schemas offline (kubernetes-validate, strict: no
unknown fields). KEDA's kinds are custom resources those schemas lack, so the fields KEDA reads
are checked here. Then what the deployment relies on: the API is probed on /readyz and /healthz,
each worker Deployment waits longer than a worker takes to checkpoint on SIGTERM, scales on the
queues it consumes, and the API accepts jobs for every worker class the overlay runs."""
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.queue import queue_for
from app.worker_pool import plan

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p for p in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir())
K8S_VERSION = "1.32"  # schemas of this release (kubernetes-validate bundles them)
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def render(overlay: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")  # fails, not skips, without it (as the browser tests)
    assert kubectl, "kubectl is needed to render the kustomizations (apt-get install kubectl)"
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def manifests(request) -> dict[tuple[str, str], dict]:
    docs = render(request.param)
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(by_key) == len(docs), "two objects of one kind share a name"
    return by_key


def of_kind(manifests: dict, kind: str) -> dict[str, dict]:
    return {name: d for (k, name), d in manifests.items() if k == kind}


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def config(manifests: dict) -> dict[str, str]:
    return of_kind(manifests, "ConfigMap")["adapt-config"]["data"]


def env_of(manifests: dict, deployment: dict) -> dict[str, str]:
    """The container's environment: its envFrom ConfigMaps, then its own env."""
    c, env = container(deployment), {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(of_kind(manifests, "ConfigMap")[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return env


def workers(manifests: dict) -> dict[str, dict]:
    return {name: d for name, d in of_kind(manifests, "Deployment").items()
            if "--worker-only" in container(d)["args"]}


def worker_processes(manifests: dict, deployment: dict):
    """The worker processes the pod runs, as adapt-serve plans them from its args, env and the
    GPUs the pod is given (app.worker_pool.plan; on a machine with those GPUs)."""
    c, env = container(deployment), env_of(manifests, deployment)
    args = c["args"]
    assert args[:2] == ["adapt-serve", "--worker-only"]
    settings = Settings(**{k[len("ADAPT_"):].lower(): v for k, v in env.items()
                           if k.startswith("ADAPT_") and k != "ADAPT_DATA_DIR"})
    gpus = int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
    option = args[args.index("--gpus") + 1] if "--gpus" in args else settings.worker_gpus
    return plan([str(i) for i in range(gpus)], option, settings.gpus_per_worker,
                settings.worker_device)


def test_core_kinds_validate_against_the_kubernetes_schemas(manifests):
    kinds = {kind for kind, _ in manifests}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
            "ScaledObject", "TriggerAuthentication"} <= kinds
    for (kind, name), doc in manifests.items():
        if kind in KEDA_KINDS:
            assert doc["apiVersion"] == "keda.sh/v1alpha1", name
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    """The validation above can fail: a misspelt field and a wrong type are refused."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "x"}, "spec": {"maxUnavailable": 1, "selectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)
    pdb["spec"] = {"minAvailable": 1, "selector": {"matchLabels": ["not", "a", "map"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)


def test_the_api_is_probed_on_readyz_and_healthz_and_served(manifests):
    api = of_kind(manifests, "Deployment")["adapt-api"]
    c = container(api)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port[c["readinessProbe"]["httpGet"]["port"]] == 8000 == port["http"]
    assert c["args"][:1] == ["adapt-serve"] and "--no-worker" in c["args"]
    service = of_kind(manifests, "Service")["adapt-api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", 8000)


def test_every_deployment_has_a_disruption_budget(manifests):
    budgets = of_kind(manifests, "PodDisruptionBudget").values()
    for name, deployment in of_kind(manifests, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items()
                   for b in budgets), name


def test_workers_stop_slower_than_they_checkpoint_and_need_only_three_urls(manifests):
    assert workers(manifests)
    for name, deployment in workers(manifests).items():
        env = env_of(manifests, deployment)
        checkpoint_s = float(env.get("ADAPT_SHUTDOWN_CHECKPOINT_S",
                                     Settings().shutdown_checkpoint_s))
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > checkpoint_s, name
        secrets = {s["secretRef"]["name"] for s in container(deployment)["envFrom"]
                   if "secretRef" in s}
        secret = {k for s in secrets for k in of_kind(manifests, "Secret")[s]["stringData"]}
        assert {"ADAPT_DATABASE_URL", "ADAPT_BROKER_URL", "ADAPT_STORAGE_URL"} <= secret, name
        volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
        assert not [v for v in volumes if "persistentVolumeClaim" in v], \
            f"{name}: no shared directory with the API"


def test_gpu_workers_ask_for_gpus_on_gpu_nodes(manifests):
    for name, deployment in workers(manifests).items():
        spec = deployment["spec"]["template"]["spec"]
        processes = worker_processes(manifests, deployment)
        if {p.device for p in processes} != {"gpu"}:
            continue
        limits = container(deployment)["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, name
        assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu"
                                            for t in spec["tolerations"]), name
        # one process per GPU, each pinned to its own
        assert sorted(p.env["CUDA_VISIBLE_DEVICES"] for p in processes) == \
            [str(i) for i in range(int(limits["nvidia.com/gpu"]))]


def test_the_api_accepts_jobs_for_every_worker_class_it_runs(manifests):
    declared = Settings(worker_classes=config(manifests)["ADAPT_WORKER_CLASSES"]).declared_workers
    for name, deployment in workers(manifests).items():
        for process in worker_processes(manifests, deployment):
            assert declared.get(process.device, -1) >= process.gpus, name


def test_each_worker_scales_on_the_queues_it_consumes(manifests):
    deployments, env_names = workers(manifests), set()
    scalers = of_kind(manifests, "ScaledObject")
    auths = of_kind(manifests, "TriggerAuthentication")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scalers.values()} == set(deployments)
    for name, scaler in scalers.items():
        target = deployments[scaler["spec"]["scaleTargetRef"]["name"]]
        processes = worker_processes(manifests, target)
        consumed = {q for p in processes for q in p.queues}
        triggers = scaler["spec"]["triggers"]
        lists = {t["metadata"]["listName"] for t in triggers if t["type"] == "redis"}
        assert lists and lists <= consumed, name
        # the queue of the jobs only this class takes (the one nothing else would scale for)
        assert {queue_for({"device": p.device, "gpus": 1}) for p in processes} <= lists, name
        env = env_of(manifests, target)
        for trigger in triggers:
            meta = trigger["metadata"]
            if trigger["type"] == "redis":
                assert int(meta["listLength"]) >= 1 and meta["addressFromEnv"] in env, name
                env_names.add(meta["addressFromEnv"])
            else:
                assert trigger["type"] == "postgresql" and "FROM jobs" in meta["query"], name
                assert float(meta["targetQueryValue"]) >= 1
            auth = auths[trigger["authenticationRef"]["name"]]
            for ref in auth["spec"]["secretTargetRef"]:
                assert ref["key"] in of_kind(manifests, "Secret")[ref["name"]]["stringData"]
        assert 0 <= scaler["spec"].get("minReplicaCount", 0) <= scaler["spec"]["maxReplicaCount"]
    assert env_names
