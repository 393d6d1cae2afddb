"""`raygate audit checkpoint / verify --checkpoint / adopt-key` and the key commands' audit
records, through the argparse wiring, with the keys from the config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditStore
from gateway.audit.cli import add_audit_commands
from gateway.audit.query import AuditFilter, list_records
from gateway.config import GatewayConfig
from gateway.identity.cli import add_key_commands
from gateway.identity.keys import KeyStore
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from tests.unit.audit.factory import make_records

CHAIN_KEY = "c1:" + "c" * 40


class Cli:
    """Runs `raygate ARGS` in-process against one config; returns (code, stdout, stderr)."""

    def __init__(self, config: GatewayConfig, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="raygate")
        commands = parser.add_subparsers(required=True)
        add_audit_commands(commands, lambda _args: self.config)
        add_key_commands(commands, lambda _args: self.config)
        args = parser.parse_args(list(argv))
        self.capsys.readouterr()
        code = int(args.run(args))
        out, err = self.capsys.readouterr()
        return code, out, err


def _config(tmp_path: Path, **audit: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "storage": {"url": f"sqlite:///{tmp_path / 'raygate.db'}"},
            "auth": {"key_secret": "0123456789abcdef0123456789"},
            "audit": audit,
        }
    )


@pytest.fixture
def keyed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    config = _config(tmp_path, chain_key=CHAIN_KEY)
    AuditStore.for_gateway(Database(config.storage.url), config).append(make_records(6))
    return Cli(config, capsys)


def test_a_checkpoint_verifies_until_the_tail_is_cut(keyed: Cli, tmp_path: Path) -> None:
    point = tmp_path / "head.json"
    code, _, err = keyed("audit", "checkpoint", "--out", str(point))
    assert code == 0 and "wrote" in err
    assert json.loads(point.read_text())["seq"] == 6

    code, out, _ = keyed("audit", "verify", "--checkpoint", str(point))
    assert code == 0 and "keyed" in out and "reaches checkpoint 6" in out

    db = Database(keyed.config.storage.url)
    (hash4,) = db.fetchone("SELECT hash FROM audit_records WHERE seq = 4") or ("",)
    db.execute("DELETE FROM audit_records WHERE seq > 4")
    db.execute("UPDATE audit_chain SET seq = 4, hash = ? WHERE name = 'head'", (hash4,))
    assert keyed("audit", "verify")[0] == 0  # consistent from the inside
    code, _, err = keyed("audit", "verify", "--checkpoint", str(point))
    assert code == 1 and "truncated" in err


def test_an_edited_checkpoint_file_fails_verification(keyed: Cli, tmp_path: Path) -> None:
    point = tmp_path / "head.json"
    keyed("audit", "checkpoint", "--out", str(point))
    body = json.loads(point.read_text())
    point.write_text(json.dumps({**body, "created_at": "2020-01-01T00:00:00.000000Z"}))
    code, _, err = keyed("audit", "verify", "--checkpoint", str(point))
    assert code == 1 and "checkpoint_invalid" in err


def test_a_checkpoint_needs_the_chain_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(_config(tmp_path), capsys)
    code, _, err = cli("audit", "checkpoint")
    assert code == 2 and "RAYGATE_AUDIT_KEY" in err


def test_adopt_key_makes_an_older_chain_verify_keyed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = _config(tmp_path)
    AuditStore.for_gateway(Database(plain.storage.url), plain).append(make_records(3))
    cli = Cli(_config(tmp_path, chain_key=CHAIN_KEY), capsys)
    code, _, err = cli("audit", "verify")
    assert code == 1 and "adopt-key" in err
    code, out, _ = cli("audit", "adopt-key")
    assert code == 0 and "keyed record 4" in out
    assert cli("audit", "verify")[0] == 0


def test_key_commands_are_recorded_with_their_actor(keyed: Cli) -> None:
    code, out, _ = keyed("keys", "issue", "--user", "ann", "--admin-role", "auditor")
    assert code == 0 and "admin role auditor" in out
    key_id = out.split()[2]
    assert keyed("keys", "revoke", key_id)[0] == 0

    store = AuditStore.for_gateway(Database(keyed.config.storage.url), keyed.config)
    records = list_records(store, AuditFilter()).records[:2]
    assert [(r.admin_action, r.admin_target) for r in records] == [
        ("admin_keys.revoke", f"key:{key_id}"),
        ("admin_keys.issue", f"key:{key_id}"),
    ]
    assert all(r.principal and r.principal.auth_method == "cli" for r in records)
    assert keyed("audit", "verify")[0] == 0


def test_without_the_chain_key_a_key_command_changes_nothing_it_cannot_record(
    keyed: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unkeyed = Cli(_config(tmp_path), capsys)
    code, _, err = unkeyed("keys", "issue", "--user", "ann")
    assert code == 2 and "RAYGATE_AUDIT_KEY" in err
    keys = KeyStore(Database(keyed.config.storage.url), keyed.config.auth.key_secret or "")
    assert keys.list(include_inactive=True) == []


def test_new_secret_prints_a_keyring_entry(keyed: Cli) -> None:
    code, out, _ = keyed("keys", "new-secret", "--id", "2027")
    assert code == 0
    assert Keyring.parse(out.strip()).current_id == "2027"


def test_keys_list_shows_a_rotated_key_working_until_its_grace_ends(keyed: Cli) -> None:
    code, out, _ = keyed("keys", "issue", "--user", "cid")
    old = out.split()[2]
    assert keyed("keys", "rotate", old, "--grace", "1d")[0] == 0
    code, listing, _ = keyed("keys", "list", "--user", "cid")
    assert code == 0
    row = next(line for line in listing.splitlines() if line.startswith(old))
    assert row.split()[2] == "rotating" and "UTC" in row
