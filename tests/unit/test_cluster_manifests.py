"""cluster/: the manifests parse, agree with each other and with the code they deploy.

No Ray cluster is started: the Serve config is checked with Ray's own schema, the launcher
config with the checks `ray up` runs, and the gateway config with `load_config`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from gateway.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
YAML_FILES = ["raygate.yaml", "serve-config.yaml", "ray-cluster.yaml", "rayservice.yaml"]
ADMIN = {"RAYGATE_ADMIN_KEY": "sk-test-admin-0123456789"}


def _yaml(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


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


def _containers(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.mark.parametrize("name", YAML_FILES)
def test_every_cluster_yaml_parses_to_a_mapping(name: str) -> None:
    assert isinstance(_yaml(name), dict)


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


@pytest.mark.parametrize("deployment", ["ingress", "router"])
def test_deployments_autoscale_with_valid_ray_serve_settings(deployment: str) -> None:
    settings = getattr(load_config(_gateway_config_path(), env=ADMIN).serve, deployment)
    assert 0 < settings.num_cpus < 1
    autoscaling = settings.autoscaling
    assert autoscaling is not None
    # Ray ignores unknown autoscaling keys silently, so a typo would go unnoticed.
    assert set(autoscaling) <= set(AutoscalingConfig.model_fields)
    parsed = AutoscalingConfig(**autoscaling)
    assert parsed.min_replicas == 1
    assert parsed.max_replicas > parsed.min_replicas
    assert parsed.target_ongoing_requests <= settings.max_ongoing_requests
    assert "num_replicas" not in settings.options()


def test_rayservice_ray_version_matches_installed_ray() -> None:
    assert _yaml("rayservice.yaml")["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__


def test_rayservice_pods_run_the_raygate_image_with_secrets_from_raygate_secrets() -> None:
    rayservice = _yaml("rayservice.yaml")
    assert (rayservice["apiVersion"], rayservice["kind"]) == ("ray.io/v1", "RayService")
    containers = _containers(rayservice)
    assert len(containers) >= 2  # head and at least one worker group
    for container in containers:
        assert container["image"] == "raygate:latest"
        refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert refs == ["raygate-secrets"]
        assert 8000 in [p["containerPort"] for p in container["ports"]]
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_launcher_head_and_worker_start_commands_run_ray_start() -> None:
    launcher = _yaml("ray-cluster.yaml")
    head = " ".join(launcher["head_start_ray_commands"])
    worker = " ".join(launcher["worker_start_ray_commands"])
    assert re.search(r"\bray start --head\b.*--port=6379", head)
    assert "--dashboard-host=0.0.0.0" in head
    assert re.search(r"\bray start --address=\$RAY_HEAD_IP:6379", worker)


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
