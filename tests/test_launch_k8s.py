"""`burnin launch k8s`: the Service and Indexed Job, checked against the kubernetes client's models,
and --apply through fakes and through the real client against a local stub API server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from burnin.cli import cli
from burnin.cli import run as run_command
from burnin.errors import BurninError
from burnin.launch import Launchers
from burnin.launch.k8s import load_apis
from burnin.plan import node_placement

SHAPE = ["--nodes", "4", "--gpus-per-node", "8"]


def launch(args: list[str], obj: Any = None) -> Any:
    return CliRunner().invoke(cli, ["launch", "k8s", *args], obj=obj)


def documents(args: list[str]) -> list[dict[str, Any]]:
    result = launch(args)
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.output))


def as_model(doc: dict[str, Any], kind: str) -> Any:
    """``doc`` deserialized into the client's model, as the client reads an API response."""
    return k8s_client.ApiClient()._ApiClient__deserialize(doc, kind)  # type: ignore[attr-defined]


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("args", "nodes", "gpus", "name", "namespace"),
    [
        (SHAPE, 4, 8, "burnin", "default"),
        (
            ["--nodes", "32", "--gpus-per-node", "8", "--name", "rack-b", "--namespace", "burn"],
            32,
            8,
            "rack-b",
            "burn",
        ),
        (["--nodes", "1", "--gpus-per-node", "4", "--namespace", "no"], 1, 4, "burnin", "no"),
    ],
)
def test_output_is_a_headless_service_and_an_indexed_job(
    args: list[str], nodes: int, gpus: int, name: str, namespace: str
):
    service, job = documents(args)
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["namespace"] == service["metadata"]["namespace"] == namespace
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == nodes
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == service["metadata"]["name"] == name
    # The Service selects exactly the Job's pods, so <job>-0.<service> resolves to pod 0.
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    (anti,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        pod["tolerations"]
    )
    container = container_of(job)
    assert container["resources"]["limits"] == {"nvidia.com/gpu": str(gpus)}
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])
    assert claim["persistentVolumeClaim"]["claimName"] == "burnin-runs"
    assert mount["mountPath"] == "/burnin-runs"


def test_every_node_runs_torchrun_with_the_rendezvous_on_pod_0():
    _service, job = documents([*SHAPE, "--profile", "acceptance", "--name", "rack-a"])
    assert container_of(job)["command"] == [
        *("torchrun", "--nnodes", "4", "--nproc-per-node", "1", "--rdzv-backend", "c10d"),
        *("--rdzv-endpoint", "rack-a-0.rack-a:29400", "--rdzv-id", "rack-a", "--no-python"),
        *("burnin", "run", "--profile", "acceptance", "--out", "/burnin-runs"),
        *("--expect-gpus", "8", "--node-name", "$(BURNIN_NODE_NAME)"),
    ]


def test_node_name_comes_from_the_downward_api_and_the_rank_from_the_pod_index():
    _service, job = documents([*SHAPE, "--name", "rack-a"])
    env = {e["name"]: e for e in container_of(job)["env"]}
    assert env["BURNIN_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # What pod 2 sees: the Job's BURNIN_NODES and the JOB_COMPLETION_INDEX Kubernetes adds.
    pod_env = {"BURNIN_NODES": env["BURNIN_NODES"]["value"], "JOB_COMPLETION_INDEX": "2"}
    from burnin.config import load_config

    ramp = load_config(None, ["ramp.step_s=10", "ramp.max_concurrent=1"]).ramp
    place = node_placement(ramp, pod_env, 8)
    assert (place.rank, place.nodes, place.source) == (2, 4, "JOB_COMPLETION_INDEX")
    assert place.offset_s == 160.0  # two whole node ramps of 8 devices 10 s apart


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        SHAPE,
        [
            "--nodes",
            "16",
            "--gpus-per-node",
            "2",
            "--image",
            "registry.example:5000/burn/in:1.2",
            "--pvc",
            "runs.shared",
            "--out",
            "/mnt/runs",
            "--port",
            "29555",
            "--profile",
            "a $b",
        ],
    ],
)
def test_documents_deserialize_into_the_client_models_without_losing_a_key(args: list[str]):
    service, job = documents(args)
    job_model = as_model(job, "V1Job")
    service_model = as_model(service, "V1Service")
    api = k8s_client.ApiClient()
    # The deserializer drops keys it does not know; a round trip equal to the input means
    # every key is a real field of batch/v1 Job and v1 Service.
    assert api.sanitize_for_serialization(job_model) == job
    assert api.sanitize_for_serialization(service_model) == service
    assert job_model.spec.completion_mode == "Indexed"
    assert job_model.spec.completions == int(args[1])
    assert job_model.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == args[3]


def test_every_document_is_json_inside_yaml():
    output = launch(SHAPE).output
    header, *bodies = output.split("---\n")
    assert all(line.startswith("#") for line in header.splitlines())
    assert [json.loads(b) for b in bodies] == documents(SHAPE)


def test_a_dollar_in_the_profile_is_not_expanded_by_kubernetes():
    _service, job = documents([*SHAPE, "--profile", "$(BURNIN_NODES).toml"])
    command = container_of(job)["command"]
    assert command[command.index("--profile") + 1] == "$$(BURNIN_NODES).toml"


def test_image_defaults_to_this_version():
    import burnin

    assert container_of(documents(SHAPE)[1])["image"] == f"burnin:{burnin.__version__}"


def test_node_command_is_a_valid_burnin_run_command_line():
    command = container_of(documents([*SHAPE, "--profile", "acceptance"])[1])["command"]
    ctx = run_command.make_context("run", command[command.index("run") + 1 :])
    assert (ctx.params["profile"], ctx.params["expect_gpus"]) == ("acceptance", 8)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--nodes", "0", "--gpus-per-node", "8"], "--nodes"),
        (["--nodes", "4", "--gpus-per-node", "0"], "--gpus-per-node"),
        (["--gpus-per-node", "8"], "--nodes"),
        ([*SHAPE, "--port", "70000"], "--port"),
        ([*SHAPE, "--name", "Burnin"], "--name"),
        ([*SHAPE, "--name", "rack_a"], "--name"),
        ([*SHAPE, "--name", "-rack"], "--name"),
        (["--nodes", "100", "--gpus-per-node", "8", "--name", "r" * 61], "--name"),
        ([*SHAPE, "--namespace", "kube system"], "--namespace"),
        ([*SHAPE, "--pvc", "runs/../x"], "--pvc"),
        ([*SHAPE, "--pvc", "x" * 254], "--pvc"),
        ([*SHAPE, "--image", "burnin:1 --privileged"], "--image"),
        ([*SHAPE, "--image", "$(evil)"], "--image"),
        ([*SHAPE, "--out", "runs"], "--out"),
        ([*SHAPE, "--out", "/runs/$(X)"], "--out"),
        ([*SHAPE, "--profile", "-x"], "--profile"),
        ([*SHAPE, "--profile", "quick\nkind: Pod"], "--profile"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], option: str):
    result = launch(args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    assert "apiVersion" not in result.output


class FakeApi:
    """CoreV1Api / BatchV1Api stand-in: records each create; raises ``fail`` when set."""

    def __init__(self, log: list[tuple[str, str, dict[str, Any]]], fail: Exception | None = None):
        self.log, self.fail = log, fail

    def _create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.log.append((kind, namespace, body))
        return body

    def create_namespaced_service(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Service", namespace, body)

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Job", namespace, body)


def test_apply_creates_the_service_then_the_job():
    log: list[tuple[str, str, dict[str, Any]]] = []
    launchers = Launchers(k8s_apis=lambda: (FakeApi(log), FakeApi(log)))
    args = [*SHAPE, "--namespace", "burn", "--name", "rack-a"]
    result = launch([*args, "--apply"], obj=launchers)
    assert result.exit_code == 0, result.output
    assert result.output == "service/rack-a created\njob.batch/rack-a created\n"
    assert [(kind, ns) for kind, ns, _ in log] == [("Service", "burn"), ("Job", "burn")]
    assert [body for *_, body in log] == documents(args)


@pytest.mark.parametrize(
    ("error", "exit_code", "message"),
    [
        (
            ApiException(status=409, reason="Conflict"),
            2,
            "job.batch/burnin already exists in namespace default "
            "(already created: service/burnin)",
        ),
        (
            ApiException(status=403, reason="Forbidden"),
            1,
            "creating job.batch/burnin in namespace default failed: 403 Forbidden "
            "(already created: service/burnin)",
        ),
    ],
)
def test_apply_failures_say_what_was_already_created(
    error: Exception, exit_code: int, message: str
):
    log: list[tuple[str, str, dict[str, Any]]] = []
    launchers = Launchers(k8s_apis=lambda: (FakeApi(log), FakeApi(log, fail=error)))
    result = launch([*SHAPE, "--apply"], obj=launchers)
    assert result.exit_code == exit_code
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def stub_api_server() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A local HTTP server answering the two create calls as the API server would (201)."""
    received: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.slow
def test_apply_through_the_real_client_posts_both_objects(stub_api_server):
    url, received = stub_api_server
    config = k8s_client.Configuration()
    config.host = url
    api = k8s_client.ApiClient(config)
    launchers = Launchers(k8s_apis=lambda: (k8s_client.CoreV1Api(api), k8s_client.BatchV1Api(api)))
    args = [*SHAPE, "--namespace", "burn"]
    result = launch([*args, "--apply"], obj=launchers)
    assert result.exit_code == 0, result.output
    assert received == [
        ("/api/v1/namespaces/burn/services", documents(args)[0]),
        ("/apis/batch/v1/namespaces/burn/jobs", documents(args)[1]),
    ]


def test_apply_without_credentials_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(BurninError, match="no Kubernetes credentials"):
        load_apis()
    result = launch([*SHAPE, "--apply"])
    assert result.exit_code == 1
    assert "no Kubernetes credentials" in result.output


@pytest.mark.parametrize("args", [["launch", "--help"], ["launch", "k8s", "--help"]])
def test_help(args: list[str]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_printing_imports_neither_torch_pynvml_nor_the_kubernetes_client():
    import subprocess
    import sys

    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom burnin.cli import cli\n"
        "for kind in ('k8s', 'slurm'):\n"
        "    args = ['launch', kind, '--nodes', '2', '--gpus-per-node', '8']\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    assert not {"torch", "pynvml", "kubernetes", "yaml"} & loaded
    assert "burnin" in loaded
