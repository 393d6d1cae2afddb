"""`raygate audit ...` through its argparse wiring, against a SQLite file."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.audit import AuditStore
from gateway.audit.cli import add_audit_commands
from tests.unit.audit.factory import T0, make_record, make_records

NOW = T0 + timedelta(days=1)


class Cli:
    """Runs `raygate audit ARGS` in-process and returns (exit code, stdout, stderr)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *argv: str, db: bool = True) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="raygate")
        add_audit_commands(parser.add_subparsers(required=True), clock=lambda: NOW)
        args = parser.parse_args(["audit", *argv, *(["--db", self.url] if db else [])])
        self.capsys.readouterr()
        code = int(args.run(args))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore.open(url)
    store.append(make_records(9))
    store.db.close()
    return url


@pytest.fixture
def cli(url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(url, capsys)


def test_verify_exits_0_and_prints_the_head_on_an_intact_chain(cli: Cli) -> None:
    code, out, _ = cli("verify")
    assert code == 0
    assert "intact: 9 records" in out
    head = out.rsplit("head ", 1)[1].strip()
    assert cli("verify", "--expect-head", head)[0] == 0


def test_verify_exits_1_and_names_the_first_bad_record(cli: Cli, url: str) -> None:
    store = AuditStore.open(url)
    store.db.execute("UPDATE audit_records SET status = 500 WHERE seq = 4")
    bad_id = store.db.fetchone("SELECT id FROM audit_records WHERE seq = 4")
    code, _, err = cli("verify")
    assert code == 1
    assert "seq 4" in err and str(bad_id and bad_id[0]) in err and "altered" in err
    code, out, _ = cli("verify", "--json")
    assert code == 1 and json.loads(out)["problem"]["seq"] == 4


def test_verify_exits_1_when_the_last_record_is_gone(cli: Cli, url: str) -> None:
    AuditStore.open(url).db.execute("DELETE FROM audit_records WHERE seq = 9")
    code, _, err = cli("verify")
    assert code == 1 and "truncated" in err


def test_a_malformed_expected_head_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("verify", "--expect-head", "nonsense")
    assert code == 2 and "SEQ:HASH" in err


def test_query_filters_and_prints_a_table(cli: Cli) -> None:
    code, out, _ = cli("query", "--user", "user1", "--topic", "payroll")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["seq", "time", "(UTC)"]
    assert [line.split()[0] for line in lines[1:]] == ["8", "5", "2"]


def test_query_as_json_pages_with_the_cursor(cli: Cli) -> None:
    code, out, _ = cli("query", "--department", "eng", "--format", "json", "--limit", "3")
    page = json.loads(out)
    assert code == 0 and [r["seq"] for r in page["records"]] == [8, 6, 4]
    assert page["next_cursor"] == "4"
    _, out, _ = cli("query", "--department", "eng", "--format", "json", "--cursor", "4")
    assert [r["seq"] for r in json.loads(out)["records"]] == [2]


def test_query_by_time_range(cli: Cli) -> None:
    _, out, _ = cli(
        "query", "--since", "2025-03-01T12:03:00Z", "--until", "2025-03-01T12:05:00Z",
        "--format", "json",
    )  # fmt: skip
    assert [r["seq"] for r in json.loads(out)["records"]] == [5, 4]


def test_query_group_by_sums_tokens_and_cost(cli: Cli) -> None:
    code, out, _ = cli("query", "--group-by", "user", "--format", "csv")
    rows = {r["user"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0 and set(rows) == {"user0", "user1", "user2"}
    user0 = [make_record(n) for n in (0, 3, 6)]
    assert int(rows["user0"]["count"]) == 3
    assert int(rows["user0"]["tokens_in"]) == sum(r.tokens_in or 0 for r in user0)
    assert float(rows["user0"]["cost_usd"]) == pytest.approx(sum(r.cost_usd or 0 for r in user0))
    code, out, _ = cli("query", "--group-by", "department")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["department", "count"]


def test_query_with_a_bad_date_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("query", "--since", "yesterday-ish")
    assert code == 2 and "since" in err


def test_export_writes_csv_and_json_files(cli: Cli, tmp_path: Path) -> None:
    out_csv, out_json = tmp_path / "audit.csv", tmp_path / "audit.json"
    assert cli("export", "--format", "csv", "--out", str(out_csv), "--group", "analysts")[0] == 0
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert [int(r["seq"]) for r in rows] == [1, 3, 5, 7, 9]
    assert cli("export", "--format", "json", "--out", str(out_json))[0] == 0
    assert len(json.loads(out_json.read_text(encoding="utf-8"))) == 9
    assert not list(tmp_path.glob("*.partial"))


def test_prune_keeps_the_chain_verifiable(cli: Cli) -> None:
    # NOW is a day after the records: 23h55m keeps minutes 5..8 (seq 6..9).
    code, out, _ = cli("prune", "--older-than", f"{24 * 60 - 5}m")
    assert code == 0 and out.startswith("pruned 5 records")
    code, out, _ = cli("verify")
    assert code == 0 and "4 records checked (seq 6..9)" in out


def test_prune_refuses_over_a_broken_chain(cli: Cli, url: str) -> None:
    AuditStore.open(url).db.execute("DELETE FROM audit_records WHERE seq = 2")
    code, _, err = cli("prune", "--older-than", "1h")
    assert code == 1 and "missing" in err


def test_without_db_the_config_storage_url_is_used(
    cli: Cli, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"storage:\n  url: {url}\n")
    monkeypatch.setenv("RAYGATE_CONFIG", str(config))
    code, out, _ = cli("verify", db=False)
    assert code == 0 and "9 records" in out


@pytest.mark.parametrize(
    ("argv", "total"),
    [
        (("verify",), "9/9"),
        (("export", "--format", "csv", "--out", "-", "--group", "analysts"), "5/5"),
    ],
)
def test_a_progress_bar_goes_to_stderr_and_leaves_stdout_as_it_was(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], total: str
) -> None:
    monkeypatch.delenv("RAYGATE_PROGRESS", raising=False)
    code, plain, err = cli(*argv)
    assert code == 0 and err == ""  # stderr is no terminal here: no bar
    code, out, err = cli(*argv, "--progress")
    assert code == 0 and out == plain
    assert "100%" in err and total in err


def test_no_progress_outranks_the_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYGATE_PROGRESS", "1")
    assert "9/9" in cli("verify")[2]
    code, _, err = cli("verify", "--no-progress")
    assert code == 0 and err == ""
