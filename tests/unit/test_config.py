"""Config: ${ENV} references, field-and-line errors, providers switched on by their keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.caveats import caveats
from gateway.cli import default_config_path
from gateway.config import ConfigError, load_config, parse_config

BASE = """
providers:
  sim: {preset: simulator}
  openai: {preset: openai}
models:
  small: {targets: [sim/sim-small]}
  gpt: {targets: [openai/gpt-4o-mini, sim/backup]}
  gpt-only: {targets: [openai/gpt-4o]}
"""


def test_env_reference_with_default_and_with_value() -> None:
    text = "serve:\n  port: ${PORT:-8123}\n  host: ${HOST}\n"
    config = parse_config(text, env={"HOST": "0.0.0.0"})
    assert (config.serve.host, config.serve.port) == ("0.0.0.0", 8123)


def test_missing_env_reference_names_variable_and_line() -> None:
    text = "serve:\n  port: 8000\n  host: ${NO_SUCH_VAR}\n"
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: environment variable NO_SUCH_VAR"):
        parse_config(text, source="cfg.yaml", env={})


def test_wrong_type_names_field_and_line() -> None:
    text = "providers:\n  sim:\n    preset: simulator\n    timeouts:\n      connect: soon\n"
    with pytest.raises(ConfigError, match=r"x.yaml:5: providers.sim.timeouts.connect"):
        parse_config(text, source="x.yaml", env={})


def test_unknown_field_is_refused_with_its_line() -> None:
    text = "serve:\n  port: 8000\n  prot: 9000\n"
    with pytest.raises(ConfigError, match=r":3: serve.prot: Extra inputs are not permitted"):
        parse_config(text, env={})


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'opneai'.*openai"):
        parse_config("providers:\n  x: {preset: opneai}\n", env={})


def test_target_naming_an_unknown_provider_is_refused() -> None:
    text = "providers:\n  sim: {preset: simulator}\nmodels:\n  m: {targets: [ghost/m]}\n"
    with pytest.raises(ConfigError, match="unknown provider 'ghost'"):
        parse_config(text, env={})


def test_target_shorthand_must_have_a_slash() -> None:
    text = "providers:\n  sim: {preset: simulator}\nmodels:\n  m: {targets: [sim-small]}\n"
    with pytest.raises(ConfigError, match=r":4: models.m.targets"):
        parse_config(text, env={})


def test_keyless_provider_is_off_and_its_targets_dropped() -> None:
    config = parse_config(BASE, env={})
    assert config.providers["openai"].disabled_reason() == "OPENAI_API_KEY is not set"
    models = config.enabled_models()
    assert set(models) == {"small", "gpt"}
    assert [t.label for t in models["gpt"].targets] == ["sim/backup"]


def test_key_in_environment_switches_the_provider_on() -> None:
    config = parse_config(BASE, env={"OPENAI_API_KEY": "sk-test"})
    assert config.providers["openai"].resolved_api_key() == "sk-test"
    assert [t.label for t in config.enabled_models()["gpt"].targets] == [
        "openai/gpt-4o-mini",
        "sim/backup",
    ]


def test_provider_without_preset_needs_kind_and_url() -> None:
    with pytest.raises(ConfigError, match="needs both kind and base_url"):
        parse_config("providers:\n  x: {kind: openai}\n", env={})


def test_the_packaged_embedded_default_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYGATE_CONFIG", raising=False)
    config = load_config(default_config_path())
    assert config.auth.dev_key and config.simulator.enabled
    assert {"sim-small", "sim-claude", "sim-gemini"} <= set(config.enabled_models())


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("serve", "store", "warned"),
    [
        ("ingress: {num_replicas: 2}", "", "serve.ingress may run 2 replicas"),
        ("ingress: {autoscaling: {min_replicas: 1, max_replicas: 8}}", "", "get 8x each limit"),
        ("ingress: {num_replicas: auto}", "", "several times each limit"),
        ("ingress: {num_replicas: 2}", "store: {url: 'redis://127.0.0.1:6379/0'}", None),
        ("ingress: {num_replicas: 1}", "", None),
    ],
)
def test_per_replica_rate_limits_are_a_caveat_where_several_ingress_replicas_may_run(
    serve: str, store: str, warned: str | None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gateway.cli import main

    text = (
        f"serve: {{{serve}}}\n"
        f"rate_limits: {{per_user: {{rpm: 60}}, {store}}}\n"
        "providers: {simulator: {preset: simulator, base_url: 'http://127.0.0.1:9/v1'}}\n"
        "models: {m: {targets: [simulator/sim-small]}}\n"
    )
    found = caveats(parse_config(text))
    assert (found == []) if warned is None else (warned in found[0] and len(found) == 1)
    config = tmp_path / "raygate.yaml"
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "warning:" in line]
    assert len(printed) == (0 if warned is None else 1)


def test_no_rate_limit_is_no_caveat_however_many_replicas() -> None:
    config = parse_config("serve: {ingress: {num_replicas: 4}}\n")
    assert caveats(config) == []


def test_sizing_a_router_that_runs_in_the_ingress_is_a_caveat() -> None:
    colocated = parse_config("serve: {router: {num_replicas: 2}}\n")
    assert "serve.router sizes a Router deployment" in caveats(colocated)[0]
    separate = parse_config("serve: {colocate_router: false, router: {num_replicas: 2}}\n")
    assert caveats(separate) == []
