"""`raygate deploy`: the raygate config travels inside the Serve config, so a changed config is
a change Serve sees; checked here without a cluster (tests/cluster deploys it for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import ConfigError, parse_config
from gateway.deploy import render

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = yaml.safe_load((ROOT / "cluster" / "serve-config.yaml").read_text())


def _args(rendered: dict[str, object]) -> dict[str, str]:
    (app,) = rendered["applications"]  # type: ignore[misc]
    return dict(app["args"])


def test_the_config_text_replaces_its_path_in_the_apps_arguments() -> None:
    args = _args(render(SERVE_CONFIG))
    assert "config" not in args
    assert args["config_text"] == (ROOT / "cluster" / "raygate.yaml").read_text()
    assert args["config_name"] == "raygate.yaml"


def test_an_edited_config_is_a_changed_serve_config(tmp_path: Path) -> None:
    edited = tmp_path / "raygate.yaml"
    original = (ROOT / "cluster" / "raygate.yaml").read_text()
    edited.write_text(original.replace("  sim-small:", "  sim-renamed:"))
    assert render(SERVE_CONFIG, config=edited) != render(SERVE_CONFIG)
    assert render(SERVE_CONFIG) == render(SERVE_CONFIG)  # nothing changed, nothing to roll


def test_restart_rebuilds_an_unchanged_config() -> None:
    assert _args(render(SERVE_CONFIG, restart=True)) != _args(render(SERVE_CONFIG, restart=True))


def test_secrets_stay_references_resolved_on_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYGATE_ADMIN_KEY", "sk-a-secret-that-must-not-travel")
    text = _args(render(SERVE_CONFIG))["config_text"]
    assert "${RAYGATE_ADMIN_KEY}" in text
    assert "sk-a-secret-that-must-not-travel" not in text


def test_an_invalid_config_is_refused_before_anything_is_deployed(tmp_path: Path) -> None:
    broken = tmp_path / "raygate.yaml"
    broken.write_text("cache:\n  similarity_threshold: 7\n")
    with pytest.raises(ConfigError, match="similarity_threshold"):
        render(SERVE_CONFIG, config=broken)


def test_render_prints_a_serve_config_the_app_builds_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments.app import build_app

    assert main(["deploy", "--render"]) == 0
    rendered = yaml.safe_load(capsys.readouterr().out)
    monkeypatch.setenv("RAYGATE_ADMIN_KEY", "sk-cluster-admin-0123456789abcdef")
    monkeypatch.setenv("RAYGATE_SIMULATOR_URL", "http://127.0.0.1:9/v1")
    app = build_app(_args(rendered))
    assert app is not None


@pytest.mark.parametrize(
    ("colocate", "deployments"),
    [("true", ["Cache", "Ingress"]), ("false", ["Cache", "Ingress", "Router"])],
)
def test_the_router_runs_in_the_ingress_unless_told_otherwise(
    colocate: str, deployments: list[str]
) -> None:
    from ray.serve._private.build_app import build_app as serve_build

    from deployments.app import build_app

    config = parse_config(
        f"serve: {{colocate_router: {colocate}}}\n"
        "auth: {admin_key: sk-cluster-admin-0123456789abcdef}\n"
        "providers: {simulator: {preset: simulator, base_url: 'http://127.0.0.1:9/v1'}}\n"
        "models: {m: {targets: [simulator/sim-small]}}\n"
    )
    built = serve_build(build_app({"config": config}), name="raygate")
    assert sorted(d.name for d in built.deployments) == deployments
