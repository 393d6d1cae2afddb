"""The admin commands use the local secrets that `raygate up` made and never make their own:
run against a cluster's config on a machine without its secrets, a fresh one would issue keys
the cluster cannot check and sign records its audit chain does not verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

CONFIG = """\
storage: {{url: "sqlite:///{db}"}}
auth: {{key_secret: "${{RAYGATE_KEY_SECRET:-}}"}}
audit: {{chain_key: "${{RAYGATE_AUDIT_KEY:-}}"}}
"""


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(config file, state dir) with neither secret in the environment."""
    for variable in ("RAYGATE_KEY_SECRET", "RAYGATE_AUDIT_KEY"):
        monkeypatch.setenv(variable, "")  # so that what the command sets is undone after
        monkeypatch.delenv(variable)
    state = tmp_path / "state"
    monkeypatch.setenv("RAYGATE_STATE_DIR", str(state))
    config = tmp_path / "raygate.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "raygate.db"))
    return config, state


def test_without_a_secret_anywhere_a_key_is_refused_and_none_is_made(
    machine: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, state = machine

    code = main(["keys", "--config", str(config), "issue", "--user", "ann"])

    assert code == 2
    assert "RAYGATE_KEY_SECRET" in capsys.readouterr().err
    assert not (state / "key_secret").exists() and not (state / "audit_key").exists()


def test_the_secrets_raygate_up_left_are_used(
    machine: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, state = machine
    state.mkdir()
    (state / "key_secret").write_text("k" * 43)
    (state / "audit_key").write_text("local:" + "a" * 43)

    code = main(["keys", "--config", str(config), "issue", "--user", "ann"])

    assert code == 0, capsys.readouterr().err
    assert "secret: rg-" in capsys.readouterr().out
