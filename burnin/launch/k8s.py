"""The Kubernetes manifests behind ``burnin launch k8s``, and their creation with the client.

Two objects: a headless Service and a ``batch/v1`` Job in ``Indexed`` completion mode with one
pod per node (``completions = parallelism = nodes``, required pod anti-affinity on the host name,
the GPUs as ``nvidia.com/gpu`` limits, a toleration for the usual ``nvidia.com/gpu`` taint). An
Indexed Job names each pod's host ``<job>-<index>``; with ``subdomain`` set to the Service, pod 0
is reachable as ``<job>-0.<service>``, which is the rendezvous endpoint. Kubernetes sets
``JOB_COMPLETION_INDEX`` in each pod and the Job sets ``BURNIN_NODES``, from which
``burnin.plan`` staggers the node starts; the node's name comes from the pod's
``spec.nodeName`` through the downward API. The run directory is a ReadWriteMany
PersistentVolumeClaim mounted in every pod. ``backoffLimit: 0`` and ``restartPolicy: Never``:
a burn-in that fails is a finding, not something to retry. Output is one JSON document per YAML
document (JSON is valid YAML), so printing needs no YAML library and no value is ever re-typed
by a YAML parser (a namespace called ``no`` or ``on`` stays a string); the ``kubernetes`` client
is imported only for ``--apply``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import burnin
from burnin.errors import BurninError, InputError
from burnin.launch.common import DEFAULT_PORT, check_pattern, check_text, node_command

# RFC 1123 label and subdomain, as Kubernetes checks object names (k8s.io/apimachinery
# pkg/util/validation/validation.go: IsDNS1123Label, IsDNS1123Subdomain).
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SUBDOMAIN = rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*"
# An image reference: registry/name:tag@digest characters only (no spaces, quotes or $).
_IMAGE = r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}"
# A mount path: absolute, plain path characters.
_MOUNT_PATH = r"/[A-Za-z0-9._/@+=,-]*"
_HOST_LABEL_MAX = 63  # the pod host name <job>-<index> is one DNS label
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource and taint key


@dataclass(frozen=True, kw_only=True)
class K8sJob:
    nodes: int
    gpus_per_node: int
    profile: str = "acceptance"
    name: str = "burnin"
    port: int = DEFAULT_PORT
    image: str | None = None
    namespace: str = "default"
    pvc: str = "burnin-runs"
    out: str = "/burnin-runs"

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise InputError(f"--nodes {self.nodes}: a job needs at least one node")
        if self.gpus_per_node < 1:
            raise InputError(f"--gpus-per-node {self.gpus_per_node}: expected at least 1")
        if not 1 <= self.port <= 65535:
            raise InputError(f"--port {self.port}: expected a TCP port, 1 to 65535")
        check_text("--profile", self.profile)
        label = "a DNS label: lowercase letters, digits and '-', at most 63 characters"
        check_pattern("--name", self.name, _LABEL, label)
        host = f"{self.name}-{self.nodes - 1}"
        if len(host) > _HOST_LABEL_MAX:
            raise InputError(
                f"--name {self.name!r}: the last pod's host name {host!r} would be longer "
                f"than {_HOST_LABEL_MAX} characters; choose a shorter name"
            )
        check_pattern("--namespace", self.namespace, _LABEL, label)
        check_pattern("--pvc", self.pvc, _SUBDOMAIN, "a claim name (a DNS subdomain)")
        check_pattern("--image", self.image_ref, _IMAGE, "an image reference like repo/burnin:1")
        check_pattern("--out", self.out, _MOUNT_PATH, "an absolute path of plain characters")

    @property
    def image_ref(self) -> str:
        return self.image or f"burnin:{burnin.__version__}"


def _k8s_literal(value: str) -> str:
    # Kubernetes expands $(VAR) in a container's command; $$ keeps a literal $.
    return value.replace("$", "$$")


def build_manifests(job: K8sJob) -> list[dict[str, Any]]:
    """The headless Service and the Indexed Job, as plain dicts in API field names."""
    labels = {"app.kubernetes.io/name": "burnin", "app.kubernetes.io/instance": job.name}
    meta = {"name": job.name, "namespace": job.namespace, "labels": labels}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "selector": labels,
            # Pods have no readiness probe; their DNS names must resolve from the start, as
            # the rendezvous begins before any pod counts as ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": job.port, "targetPort": job.port}],
        },
    }
    endpoint = f"{job.name}-0.{job.name}:{job.port}"
    command = node_command(
        job.nodes, endpoint, job.name, _k8s_literal(job.profile), job.out, job.gpus_per_node
    )
    command += ["--node-name", "$(BURNIN_NODE_NAME)"]
    container = {
        "name": "burnin",
        "image": job.image_ref,
        "command": command,
        "env": [
            {"name": "BURNIN_NODES", "value": str(job.nodes)},
            {
                "name": "BURNIN_NODE_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
            },
        ],
        "ports": [{"name": "rendezvous", "containerPort": job.port}],
        "resources": {"limits": {GPU_RESOURCE: str(job.gpus_per_node)}},
        "volumeMounts": [
            {"name": "runs", "mountPath": job.out},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec = {
        "restartPolicy": "Never",
        "subdomain": job.name,
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": labels},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        },
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [container],
        "volumes": [
            {"name": "runs", "persistentVolumeClaim": {"claimName": job.pvc}},
            # NCCL and torch workers exchange data through /dev/shm; a container's default is
            # 64 MiB, too small for them.
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
        ],
    }
    job_doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": job.nodes,
            "parallelism": job.nodes,
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return [service, job_doc]


def render_yaml(documents: Sequence[dict[str, Any]]) -> str:
    """A multi-document YAML stream, one JSON document per YAML document."""
    header = [
        "# burnin rack burn-in: a headless Service and an Indexed Job, one pod per node.",
        "# Written by `burnin launch k8s`; create it with `kubectl apply -f FILE`.",
        "# Each document is JSON, which is valid YAML.",
    ]
    body = [f"---\n{json.dumps(doc, indent=2)}" for doc in documents]
    return "\n".join([*header, *body]) + "\n"


def load_apis() -> tuple[Any, Any]:
    """CoreV1Api and BatchV1Api from the kubeconfig, or the in-cluster service account.

    Raises:
        BurninError: the ``kubernetes`` client is not installed, or no credentials are found.
    """
    try:
        from kubernetes import client, config
    except ImportError:
        raise BurninError(
            "--apply needs the kubernetes client: pip install 'burnin[k8s]'"
        ) from None
    try:
        config.load_kube_config()
    except config.ConfigException as kube_error:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise BurninError(
                f"--apply: no Kubernetes credentials (kubeconfig: {kube_error}; not in a pod)"
            ) from None
    return client.CoreV1Api(), client.BatchV1Api()


def apply(documents: Sequence[dict[str, Any]], core: Any, batch: Any) -> list[str]:
    """Create each document with the client, in order; one line per object created.

    Raises:
        InputError: an object of that name already exists.
        BurninError: the API refused an object or could not be reached; the message says which
            objects were created before.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    created: list[str] = []
    for doc in documents:
        kind, name = doc["kind"], doc["metadata"]["name"]
        namespace = doc["metadata"]["namespace"]
        ref = f"{'job.batch' if kind == 'Job' else kind.lower()}/{name}"
        before = f" (already created: {', '.join(created)})" if created else ""
        try:
            if kind == "Service":
                core.create_namespaced_service(namespace, doc)
            elif kind == "Job":
                batch.create_namespaced_job(namespace, doc)
            else:
                raise BurninError(f"cannot create a {kind}")
        except ApiException as exc:
            if exc.status == 409:
                raise InputError(
                    f"{ref} already exists in namespace {namespace}{before}; delete it "
                    "(kubectl delete job,service -n NAMESPACE NAME) or choose another --name"
                ) from None
            raise BurninError(
                f"creating {ref} in namespace {namespace} failed: {exc.status} {exc.reason}{before}"
            ) from None
        except HTTPError as exc:
            raise BurninError(f"creating {ref}: cannot reach the cluster: {exc}{before}") from None
        created.append(ref)
    return [f"{ref} created" for ref in created]
