"""Prompts and answers sealed at rest in the audit trail: not in the database in clear, read
back by queries and exports, verified by the chain, resealed when the data key rotates."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import AuditRecord, AuditStore, AuditWriter, verify
from gateway.audit.cli import add_audit_commands
from gateway.audit.export import export_chunks
from gateway.audit.keying import rekey
from gateway.audit.query import AuditFilter, list_records
from gateway.config import GatewayConfig
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer
from tests.unit.audit.factory import make_record

SECRET_PROMPT = "my card is 4111 1111 1111 1111, expiry 09/29"
SECRET_ANSWER = "noted the card ending 1111"
OLD = "d1:" + "o" * 40
NEW = "d2:" + "n" * 40


def sealed_store(db: Database, data_key: str, *, migrate: bool = True) -> AuditStore:
    return AuditStore(db, sealer=Sealer(Keyring.parse(data_key)), migrate=migrate)


def secret_records(count: int = 3) -> list[AuditRecord]:
    return [
        make_record(
            n,
            prompt_mode="full",
            prompt=f"{SECRET_PROMPT} #{n}",
            response_mode="full",
            response=SECRET_ANSWER,
        )
        for n in range(count)
    ]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


def _on_disk(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))


def test_sealed_content_is_not_in_the_database_but_reads_back(db: Database) -> None:
    store = sealed_store(db, OLD)
    store.append(secret_records())

    raw = db.fetchall("SELECT prompt, response, content_key FROM audit_records")
    assert all(SECRET_PROMPT not in p and SECRET_ANSWER not in r for p, r, _ in raw)
    assert {key for _, _, key in raw} == {"d1"}

    page = list_records(store, AuditFilter())
    assert {r.prompt for r in page.records} == {f"{SECRET_PROMPT} #{n}" for n in range(3)}
    exported = "".join(export_chunks(store, AuditFilter(), "json"))
    assert SECRET_ANSWER in exported
    assert verify(store).ok


def test_the_sqlite_file_never_holds_the_clear_text(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    sealed_store(db, OLD).append(secret_records())
    db.close()
    on_disk = _on_disk(tmp_path)
    assert b"4111 1111" not in on_disk and SECRET_ANSWER.encode() not in on_disk
    assert b"user0@example.org" in on_disk  # the test reads the right files


def test_content_moved_to_another_record_or_column_is_found(db: Database) -> None:
    store = sealed_store(db, OLD)
    store.append(secret_records())
    (moved,) = db.fetchone("SELECT prompt FROM audit_records WHERE seq = 1") or ("",)
    db.execute("UPDATE audit_records SET prompt = ? WHERE seq = 2", (moved,))
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("unreadable", 2)


def test_content_marked_clear_again_is_found(db: Database) -> None:
    store = sealed_store(db, OLD)
    store.append(secret_records())
    db.execute("UPDATE audit_records SET content_key = NULL WHERE seq = 2")
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("altered", 2)


def test_without_the_data_key_verification_says_what_is_missing(db: Database) -> None:
    sealed_store(db, OLD).append(secret_records())
    problem = verify(AuditStore(db, migrate=False)).problem
    assert problem is not None and problem.kind == "unreadable"
    assert "storage.data_key" in problem.detail


def test_a_rotated_data_key_reads_old_records_and_rekey_moves_them_over(db: Database) -> None:
    sealed_store(db, OLD).append(secret_records(4))
    rotated = sealed_store(db, f"{NEW},{OLD}", migrate=False)
    rotated.append(secret_records(1))  # new records: under the new key
    assert {r.response for r in list_records(rotated, AuditFilter()).records} == {SECRET_ANSWER}

    report = rekey(rotated, page_size=3)

    assert (report.resealed, report.unreadable, report.key_id) == (4, [], "d2")
    keys = {k for (k,) in db.fetchall("SELECT content_key FROM audit_records")}
    assert keys == {"d2"}
    retired = sealed_store(db, NEW, migrate=False)  # the old key can go now
    assert verify(retired).ok
    assert len(list_records(retired, AuditFilter()).records) == 5
    assert rekey(retired).resealed == 0


def test_rekey_seals_records_written_before_there_was_a_data_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(Database(url)).append(secret_records())
    config = GatewayConfig.model_validate(
        {"storage": {"url": url, "data_key": OLD}, "audit": {"chain_key": "c1:" + "c" * 40}}
    )
    parser = argparse.ArgumentParser()
    add_audit_commands(parser.add_subparsers(required=True), lambda _args: config)

    for argv in (["adopt-key"], ["rekey"], ["verify", "--json"]):
        args = parser.parse_args(["audit", *argv])
        assert args.run(args) == 0, argv

    on_disk = _on_disk(tmp_path)
    assert b"4111 1111" not in on_disk and SECRET_ANSWER.encode() not in on_disk
    store = AuditStore.for_gateway(Database(url), config)
    assert verify(store).ok
    actions = [r.admin_action for r in list_records(store, AuditFilter()).records]
    assert actions[:2] == ["audit.rekey", "audit.adopt_key"]


def test_an_altered_sealed_value_is_left_as_evidence_by_rekey(db: Database) -> None:
    sealed_store(db, OLD).append(secret_records())
    (value,) = db.fetchone("SELECT response FROM audit_records WHERE seq = 2") or ("",)
    db.execute("UPDATE audit_records SET response = ? WHERE seq = 2", (value[:-4] + "AAAA",))
    report = rekey(sealed_store(db, f"{NEW},{OLD}", migrate=False))
    assert report.unreadable == [2] and report.resealed == 2


def test_the_gateway_store_takes_both_keys_from_the_config(db: Database) -> None:
    config = GatewayConfig.model_validate(
        {"storage": {"data_key": OLD}, "audit": {"chain_key": "c1:" + "c" * 40}}
    )
    store = AuditStore.for_gateway(db, config)
    sealed = store.append(secret_records(1))
    assert sealed[0].chain_key == "c1"
    row = db.fetchone("SELECT content_key, prompt FROM audit_records")
    assert row is not None and row[0] == "d1" and SECRET_PROMPT not in row[1]
    assert json.loads(verify(store).model_dump_json())["keyed"] is True


@pytest.mark.asyncio
async def test_the_gateway_writer_keys_the_chain_and_seals_what_it_is_given(
    db: Database,
) -> None:
    config = GatewayConfig.model_validate(
        {
            "storage": {"data_key": OLD},
            "audit": {"chain_key": "c1:" + "c" * 40, "prompt": "full", "response": "full"},
        }
    )
    writer = AuditWriter.for_gateway(db, config)
    forwarded = "my card is [CREDIT_CARD]"  # the prompt as the input policy let it through
    await writer.record(make_record(0, prompt_mode=None, prompt=forwarded, response_mode=None))
    await writer.flush()
    (record,) = list_records(writer.store, AuditFilter()).records
    assert (record.prompt, record.prompt_mode, record.chain_key) == (forwarded, "full", "c1")
    row = db.fetchone("SELECT prompt, content_key FROM audit_records")
    assert row is not None and "CREDIT_CARD" not in row[0] and row[1] == "d1"
    assert verify(writer.store).ok
    await writer.aclose()
