"""The environment `raygate up` gives what it starts: every phone-home switched off, whatever
the operator's environment says. No process is started: `subprocess.Popen` is replaced."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import deployments.local as local
from deployments.local import NO_PHONE_HOME, ray_env
from gateway.config import GatewayConfig

# What an air-gapped site needs off: Ray's and vLLM's usage stats, anything honouring
# DO_NOT_TRACK, Hugging Face telemetry and run-time downloads from the Hub.
AIR_GAPPED = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}


@pytest.fixture
def phoning_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's environment with every switch turned the other way."""
    for name, value in AIR_GAPPED.items():
        monkeypatch.setenv(name, "1" if value == "0" else "0")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)


def test_no_phone_home_holds_every_switch_an_air_gapped_site_needs() -> None:
    assert NO_PHONE_HOME == AIR_GAPPED


@pytest.mark.usefixtures("phoning_home")
def test_the_local_ray_gets_every_phone_home_switch_whatever_the_environment(
    tmp_path: Path,
) -> None:
    env = ray_env(tmp_path)
    assert {name: env[name] for name in AIR_GAPPED} == AIR_GAPPED
    assert env["RAY_AUTH_MODE"] == "token"  # the switches leave token auth as it was


@pytest.mark.usefixtures("phoning_home")
def test_the_simulator_gets_every_phone_home_switch_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[dict[str, Any]] = []

    def popen(command: list[str], **kwargs: Any) -> object:
        started.append(kwargs)
        return object()

    monkeypatch.setattr(subprocess, "Popen", popen)
    config = GatewayConfig.model_validate({"simulator": {"enabled": True}})
    local._start_simulator(config, tmp_path)
    (kwargs,) = started
    assert {name: kwargs["env"][name] for name in AIR_GAPPED} == AIR_GAPPED


def test_haproxy_runs_through_raygate_haproxy_unless_the_operator_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_SERVE_HAPROXY_BINARY_PATH", raising=False)
    wrapper = ray_env(tmp_path)["RAY_SERVE_HAPROXY_BINARY_PATH"]
    assert Path(wrapper).name == "raygate-haproxy" and Path(wrapper).is_file()
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", "/opt/haproxy")
    assert ray_env(tmp_path)["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/opt/haproxy"
