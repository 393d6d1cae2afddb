"""Issue #13, finding 7: the well-known local keys never leave loopback, and a short admin key
never starts a gateway (`raygate up`, `raygate check-config`, `build_app`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import AuthConfig, ConfigError, GatewayConfig
from gateway.identity.startup import (
    DEFAULT_ADMIN_KEY,
    DEFAULT_DEV_KEY,
    check_safe_to_start,
    is_loopback,
    unsafe_settings,
)

LONG_ADMIN = "a-long-random-admin-key-0123456789"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("gateway.example.org", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_embedded_defaults_are_fine_on_loopback() -> None:
    auth = AuthConfig(dev_key=DEFAULT_DEV_KEY, admin_key=DEFAULT_ADMIN_KEY)
    assert unsafe_settings(auth, "127.0.0.1") == []


def test_the_default_keys_are_refused_on_a_public_address() -> None:
    auth = AuthConfig(dev_key=DEFAULT_DEV_KEY, admin_key=DEFAULT_ADMIN_KEY)
    problems = unsafe_settings(auth, "0.0.0.0")
    assert len(problems) == 2
    assert "auth.dev_key (the default developer key)" in problems[0]
    assert "RAYGATE_DEV_KEY=" in problems[0]
    assert "auth.admin_key is the default" in problems[1]


def test_any_developer_key_stays_on_loopback_and_issued_keys_go_further() -> None:
    custom = AuthConfig(dev_key="a-custom-developer-key-0123456789", admin_key=LONG_ADMIN)
    assert "a dev key" in unsafe_settings(custom, "10.0.0.5")[0]
    assert unsafe_settings(AuthConfig(admin_key=LONG_ADMIN), "0.0.0.0") == []


def test_a_short_admin_key_is_refused_everywhere() -> None:
    for host in ("127.0.0.1", "0.0.0.0"):
        (problem,) = unsafe_settings(AuthConfig(admin_key="admin123"), host)
        assert "shorter than 16" in problem


def test_check_safe_to_start_names_every_problem() -> None:
    config = GatewayConfig.model_validate(
        {"serve": {"host": "0.0.0.0"}, "auth": {"dev_key": DEFAULT_DEV_KEY, "admin_key": "x"}}
    )
    with pytest.raises(ConfigError, match="refusing to start") as caught:
        check_safe_to_start(config)
    assert str(caught.value).count("\n  ") == 2


def test_raygate_up_on_a_public_address_with_the_default_keys_exits_2_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("RAYGATE_CONFIG", "RAYGATE_DEV_KEY", "RAYGATE_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAYGATE_HOST", "0.0.0.0")
    monkeypatch.setenv("RAYGATE_STATE_DIR", str(tmp_path))
    # Set here so that `up` does not put generated ones in this process's environment.
    monkeypatch.setenv("RAYGATE_KEY_SECRET", "0123456789abcdef0123456789")
    monkeypatch.setenv("RAYGATE_AUDIT_KEY", "t:" + "x" * 40)

    code = main(["up", "--state-dir", str(tmp_path)])

    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "0.0.0.0" in err and "sk-raygate-admin" in err
    assert not (tmp_path / "state.json").exists()  # no simulator, no Ray


def test_check_config_refuses_a_short_admin_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "raygate.yaml"
    config.write_text(
        "auth:\n  admin_key: ${RAYGATE_ADMIN_KEY}\n"
        "providers:\n  sim: {preset: simulator, base_url: 'http://127.0.0.1:8100/v1'}\n"
        "models:\n  small: {targets: [sim/sim-small]}\n"
    )
    monkeypatch.setenv("RAYGATE_ADMIN_KEY", "hunter2")
    assert main(["check-config", "--config", str(config)]) == 2
    assert "auth.admin_key is shorter than 16" in capsys.readouterr().err
    monkeypatch.setenv("RAYGATE_ADMIN_KEY", LONG_ADMIN)
    assert main(["check-config", "--config", str(config)]) == 0


def test_build_app_refuses_the_default_admin_key_on_a_public_address() -> None:
    from deployments.app import build_app

    config = GatewayConfig.model_validate(
        {"serve": {"host": "0.0.0.0"}, "auth": {"admin_key": DEFAULT_ADMIN_KEY}}
    )
    with pytest.raises(ConfigError, match="admin_key is the default"):
        build_app({"config": config})
