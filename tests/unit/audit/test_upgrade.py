"""Fields added after the first release: old records keep their hashes, old tables gain the
new columns, and the new fields are hashed once set."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gateway.audit import AuditStore
from gateway.audit.chain import GENESIS, link_hash
from gateway.audit.query import AuditFilter, summarize
from gateway.audit.schema import DDL
from gateway.audit.verify import verify
from gateway.storage import Database
from tests.unit.audit.factory import make_record

# The first release's record: what was hashed before the additions existed.
_ADDED = {"cost_avoided_usd", "admin_action", "admin_target", "chain_key"}
_ADDED_TO_PRINCIPAL = {"key_id"}
_ADDED_TO_DECISIONS = {"score", "threshold", "detail"}


def _first_release_hash(prev: str, body: dict[str, object]) -> str:
    old = {k: v for k, v in body.items() if k not in _ADDED and k != "hash"}
    if isinstance(old.get("principal"), dict):
        old["principal"] = {
            k: v
            for k, v in old["principal"].items()  # type: ignore[attr-defined]
            if k not in _ADDED_TO_PRINCIPAL
        }
    old["decisions"] = [
        {k: v for k, v in d.items() if k not in _ADDED_TO_DECISIONS}
        for d in body["decisions"]  # type: ignore[attr-defined]
    ]
    text = json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def test_a_record_without_the_new_fields_hashes_as_the_first_release_did() -> None:
    record = make_record(1).model_copy(update={"seq": 1, "prev_hash": GENESIS})
    assert link_hash(GENESIS, record) == _first_release_hash(
        GENESIS, record.model_dump(mode="json")
    )


def test_a_set_cost_avoided_is_part_of_the_hash() -> None:
    record = make_record(1).model_copy(update={"seq": 1, "prev_hash": GENESIS})
    saved = record.model_copy(update={"cost_avoided_usd": 0.002})
    assert link_hash(GENESIS, saved) != link_hash(GENESIS, record)


def test_an_older_table_gains_the_new_column_and_its_chain_still_verifies(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    old_table = DDL[0].replace("cost_avoided_usd DOUBLE PRECISION,", "")
    assert old_table != DDL[0]
    db = Database(url)
    db.migrate([old_table])
    columns = [row[1] for row in db.fetchall("PRAGMA table_info(audit_records)")]
    assert "cost_avoided_usd" not in columns
    store = AuditStore(db)  # opening upgrades the table
    store.append([make_record(0), make_record(1, cost_avoided_usd=0.25, cost_usd=0.0)])
    report = verify(store)
    assert report.ok, report
    by_model = {row.key: row for row in summarize(store, AuditFilter(), "model")}
    assert by_model["sim-large"].cost_avoided_usd == 0.25
    assert by_model["sim-small"].cost_avoided_usd == 0.0
