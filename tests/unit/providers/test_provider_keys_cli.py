"""`raygate providers`: list the providers (on or off, and why), set a key at run time from
the environment or stdin (never argv), remove it; each change audited, the key never printed."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from gateway.audit.query import AuditFilter, list_records
from gateway.audit.store import AuditStore
from gateway.config import GatewayConfig, parse_config
from gateway.providers.cli import add_provider_commands
from gateway.storage import Database
from gateway.storage.keyring import new_secret


@pytest.fixture
def config(tmp_path: Path) -> GatewayConfig:
    return parse_config(
        f"""
storage: {{url: "sqlite:///{tmp_path}/gw.db", data_key: "k1:{new_secret()}"}}
audit: {{enabled: true}}
providers:
  openai: {{preset: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  gpt: {{targets: [openai/gpt-4o-mini]}}
""",
        env={},
    )


def run(config: GatewayConfig, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="raygate")
    add_provider_commands(parser.add_subparsers(required=True), lambda args: config)
    args = parser.parse_args(["providers", *argv])
    return int(args.run(args))


def listed(config: GatewayConfig, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert run(config, "list", "--json") == 0
    (openai,) = json.loads(capsys.readouterr().out)
    return dict(openai)


def test_a_key_set_from_the_cli_switches_the_provider_on_and_is_audited(
    config: GatewayConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    off = listed(config, capsys)
    assert not off["enabled"] and off["disabled_reason"] == "OPENAI_API_KEY is not set"

    monkeypatch.setenv("NEW_OPENAI_KEY", "sk-from-env-4242")
    assert run(config, "set-key", "openai", "--from-env", "NEW_OPENAI_KEY") == 0
    said = capsys.readouterr().out
    assert "...4242" in said and "sk-from-env" not in said
    on = listed(config, capsys)
    assert on["enabled"] and on["runtime_key"]["hint"] == "...4242"  # type: ignore[index]

    monkeypatch.setattr("sys.stdin", io.StringIO("sk-from-stdin-7777\n"))
    assert run(config, "set-key", "openai") == 0
    assert listed(config, capsys)["runtime_key"]["hint"] == "...7777"  # type: ignore[index]
    assert run(config, "list") == 0
    assert "set at run time ...7777" in capsys.readouterr().out

    assert run(config, "remove-key", "openai") == 0
    assert not listed(config, capsys)["enabled"]
    assert run(config, "remove-key", "openai") == 1
    assert run(config, "set-key", "ghost", "--from-env", "NEW_OPENAI_KEY") == 2

    store = AuditStore.for_gateway(Database(config.storage.url), config)
    found = list_records(store, AuditFilter()).records
    actions = [(r.admin_action, r.admin_target) for r in found]
    assert actions.count(("providers.set_key", "provider:openai")) == 2
    assert ("providers.remove_key", "provider:openai") in actions
