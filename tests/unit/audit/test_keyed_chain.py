"""A keyed chain against someone who can write the database but does not hold the chain key:
truncation, anchor moves, re-sealing, deletion in the middle and edits are each detected,
on SQLite and PostgreSQL. Issue #13, finding 3."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from gateway.audit import AuditRecord, AuditStore, verify
from gateway.audit.actions import cli_actor
from gateway.audit.chain import GENESIS, seal
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.keying import adopt_key, make_checkpoint
from gateway.audit.retention import prune
from gateway.audit.schema import COLUMNS, to_row
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from tests.unit.audit.factory import T0, make_record, make_records

KEY = Keyring.parse("k1:" + "a" * 40)
ROTATED = Keyring.parse("k2:" + "b" * 40 + ",k1:" + "a" * 40)
STRANGER = Keyring.parse("k1:" + "z" * 40)  # the same id, another secret: a forger's guess
COUNT = 8


def _clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


@pytest.fixture
def keyed(db_url: str) -> Iterator[AuditStore]:
    store = AuditStore(Database(db_url), chain_keys=KEY)
    yield store
    store.db.close()


@pytest.fixture
def chain(keyed: AuditStore) -> list[AuditRecord]:
    return keyed.append(make_records(5)) + keyed.append(make_records(COUNT - 5, start=5))


def _rewrite(store: AuditStore, seq: int, record: AuditRecord) -> None:
    sets = ", ".join(f"{c} = ?" for c in COLUMNS)
    store.db.execute(f"UPDATE audit_records SET {sets} WHERE seq = ?", (*to_row(record), seq))


def _problem(store: AuditStore, **options: object) -> tuple[str, int | None]:
    report = verify(store, **options)  # type: ignore[arg-type]
    assert report.problem is not None, "the forgery went unnoticed"
    return report.problem.kind, report.problem.seq


def _delete_prefix_and_move_anchor(
    store: AuditStore, through: int, chain: list[AuditRecord]
) -> None:
    store.db.execute("DELETE FROM audit_records WHERE seq <= ?", (through,))
    for table in ("audit_groups", "audit_topics", "audit_actions"):
        store.db.execute(f"DELETE FROM {table} WHERE seq <= ?", (through,))
    store.db.execute(
        "UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'anchor'",
        (through, chain[through - 1].hash),
    )


def test_a_keyed_chain_verifies_and_every_record_names_its_key(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    report = verify(keyed, page_size=3)
    assert report.ok and report.keyed and report.checked == COUNT and report.unkeyed == 0
    assert {r.chain_key for r in chain} == {"k1"}


def test_without_the_key_a_keyed_chain_does_not_pass_for_verified(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    unkeyed = AuditStore(keyed.db, migrate=False)
    assert _problem(unkeyed) == ("unknown_key", 1)


# --- the attack: cut the start, move the anchor, keep a valid-looking chain -----------


def test_records_deleted_from_the_start_with_the_anchor_moved_are_found(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    _, checkpoint = make_checkpoint(keyed)
    assert checkpoint is not None
    _delete_prefix_and_move_anchor(keyed, 6, chain)

    assert _problem(keyed) == ("anchor_unauthenticated", 6)
    # Neither the head the operator kept nor the checkpoint lets it pass.
    assert _problem(keyed, checkpoint=checkpoint)[0] == "anchor_unauthenticated"
    assert _problem(keyed, expected_head=checkpoint.head)[0] == "anchor_unauthenticated"


def test_the_same_attack_on_an_unkeyed_chain_passes_which_is_why_the_key_exists(
    db_url: str,
) -> None:
    plain = AuditStore(Database(db_url))
    chain = plain.append(make_records(COUNT))
    kept = verify(plain).head
    _delete_prefix_and_move_anchor(plain, 6, chain)
    assert verify(plain, expected_head=kept).ok  # the gap finding 3 describes
    plain.db.close()


def test_an_anchor_mac_from_an_earlier_prune_cannot_be_reused_further_on(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    prune(keyed, timedelta(minutes=2), clock=_clock(T0 + timedelta(minutes=4)))  # cuts seq 1..2
    state = keyed.chain_state()
    assert state.anchor.seq == 2 and state.anchor_mac is not None
    assert verify(keyed).ok
    _delete_prefix_and_move_anchor(keyed, 5, chain)
    keyed.db.execute("UPDATE audit_chain SET mac = ? WHERE name = 'anchor'", (state.anchor_mac,))
    assert _problem(keyed) == ("anchor_unauthenticated", 5)
    # Putting the old anchor back shows the records deleted after it.
    keyed.db.execute(
        "UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'anchor'",
        (state.anchor.seq, state.anchor.hash),
    )
    assert _problem(keyed) == ("missing", 3)


# --- truncation: what only a checkpoint kept elsewhere can show --------------------------------


def test_a_tail_cut_with_the_head_rewritten_is_found_against_a_checkpoint(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    _, checkpoint = make_checkpoint(keyed)
    assert checkpoint is not None
    keyed.db.execute("DELETE FROM audit_records WHERE seq > 4")
    keyed.db.execute(
        "UPDATE audit_chain SET seq = 4, hash = ? WHERE name = 'head'", (chain[3].hash,)
    )

    assert verify(keyed).ok  # consistent from the inside, as any chain would be...
    assert _problem(keyed, checkpoint=checkpoint) == ("truncated", 5)  # ...but not against it


def test_a_chain_emptied_and_reset_to_genesis_is_found_against_a_checkpoint(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    _, checkpoint = make_checkpoint(keyed)
    assert checkpoint is not None
    keyed.db.execute("DELETE FROM audit_records")
    keyed.db.execute("UPDATE audit_chain SET seq = 0, hash = ? WHERE name = 'head'", (GENESIS,))
    assert _problem(keyed, checkpoint=checkpoint)[0] == "truncated"


def test_an_edited_or_foreign_checkpoint_is_refused(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    _, checkpoint = make_checkpoint(keyed)
    assert checkpoint is not None
    edited = checkpoint.model_copy(update={"seq": 3, "hash": chain[2].hash})
    assert _problem(keyed, checkpoint=edited) == ("checkpoint_invalid", 3)
    foreign = edited.signed(STRANGER.derive("audit-chain/v1").current())
    assert _problem(keyed, checkpoint=foreign)[0] == "checkpoint_invalid"
    assert Checkpoint.loads(checkpoint.dumps()) == checkpoint
    assert verify(keyed, checkpoint=checkpoint).ok


def test_a_checkpoint_made_before_a_prune_still_verifies_after_it(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    _, checkpoint = make_checkpoint(keyed)
    assert checkpoint is not None
    keyed.append(make_records(2, start=COUNT))
    prune(keyed, timedelta(minutes=1), clock=_clock(T0 + timedelta(minutes=COUNT + 2)))
    assert keyed.chain_state().anchor.seq > checkpoint.seq
    assert verify(keyed, checkpoint=checkpoint).ok


# --- re-sealing by someone without the key -----------------------------------------------------


def test_an_edit_resealed_without_the_key_is_found(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    edited = chain[3].model_copy(update={"status": 403, "hash": None})
    forged = seal(edited, 4, chain[2].hash or "", STRANGER.derive("audit-chain/v1").current())
    _rewrite(keyed, 4, forged)
    assert _problem(keyed) == ("altered", 4)


def test_a_chain_relinked_as_unkeyed_after_a_keyed_record_is_found(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    prev = chain[2].hash or ""
    for n in range(4, COUNT + 1):  # plain SHA-256 from seq 4 on, every link perfect
        forged = seal(chain[n - 1].model_copy(update={"status": 418, "chain_key": None}), n, prev)
        _rewrite(keyed, n, forged)
        prev = forged.hash or ""
    keyed.db.execute("UPDATE audit_chain SET hash = ? WHERE name = 'head'", (prev,))
    assert _problem(keyed) == ("unkeyed", 4)


def test_a_whole_chain_rewritten_without_the_key_is_found(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    prev = GENESIS
    for n in range(1, COUNT + 1):
        forged = seal(chain[n - 1].model_copy(update={"chain_key": None}), n, prev)
        _rewrite(keyed, n, forged)
        prev = forged.hash or ""
    keyed.db.execute("UPDATE audit_chain SET hash = ? WHERE name = 'head'", (prev,))
    assert _problem(keyed) == ("unkeyed", 1)


def test_a_record_relabelled_with_a_key_nobody_holds_is_found(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    keyed.db.execute("UPDATE audit_records SET chain_key = 'k9' WHERE seq = 2")
    assert _problem(keyed) == ("unknown_key", 2)


# --- deletion in the middle and edits ------------------------------------------------------------


def test_a_record_deleted_in_the_middle_is_found(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    keyed.db.execute("DELETE FROM audit_records WHERE seq = 4")
    assert _problem(keyed) == ("missing", 4)


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("status", 500, "altered"),
        ("prompt", "something else", "altered"),
        ("user_id", "mallory", "altered"),
        ("admin_action", "keys.revoke", "altered"),
        ("principal_key_id", "deadbeef", "altered"),
        ("chain_key", None, "unkeyed"),  # posing as a record from before the key
    ],
)
def test_an_edited_column_is_found(
    keyed: AuditStore, chain: list[AuditRecord], column: str, value: object, kind: str
) -> None:
    keyed.db.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = 3", (value,))
    assert _problem(keyed) == (kind, 3)


# --- rotation and migration ------------------------------------------------------------------


def test_a_rotated_key_seals_new_records_and_old_ones_still_verify(
    keyed: AuditStore, chain: list[AuditRecord]
) -> None:
    rotated = AuditStore(keyed.db, migrate=False, chain_keys=ROTATED)
    newer = rotated.append(make_records(2, start=COUNT))
    assert {r.chain_key for r in newer} == {"k2"}
    assert verify(rotated).ok
    retired = AuditStore(keyed.db, migrate=False, chain_keys=Keyring.parse("k2:" + "b" * 40))
    assert _problem(retired) == ("unknown_key", 1)  # keep old keys while their records remain


def test_an_unkeyed_chain_adopts_its_key_and_stays_covered(db_url: str) -> None:
    plain = AuditStore(Database(db_url))
    plain.append(make_records(6))
    prune(plain, timedelta(minutes=1), clock=_clock(T0 + timedelta(minutes=3)))  # anchor at 2
    keyed = AuditStore(plain.db, migrate=False, chain_keys=KEY)

    assert verify(plain).ok  # nothing changes for a gateway without the key
    assert _problem(keyed)[0] == "anchor_unauthenticated"  # pruned before it was keyed

    report = adopt_key(keyed, cli_actor())
    assert report.ok and report.anchor_authenticated and report.adoption_seq == 7
    after = verify(keyed)
    assert after.ok and after.unkeyed == 4
    assert adopt_key(keyed, cli_actor()).adoption_seq is None  # once is enough

    # The older, unkeyed records are covered by the keyed one after them.
    keyed.db.execute("UPDATE audit_records SET status = 500 WHERE seq = 4")
    assert _problem(keyed)[0] == "altered"
    plain.db.close()


def test_a_keyed_store_flags_an_unkeyed_tail_until_the_chain_adopts_the_key(
    db_url: str,
) -> None:
    plain = AuditStore(Database(db_url))
    plain.append(make_records(3))
    keyed = AuditStore(plain.db, migrate=False, chain_keys=KEY)
    assert _problem(keyed) == ("unkeyed", 1)
    keyed.append([make_record(3)])  # the gateway's next record adopts it as well
    assert verify(keyed).ok
    plain.db.close()


def test_adoption_refuses_a_broken_chain(db_url: str) -> None:
    plain = AuditStore(Database(db_url))
    plain.append(make_records(3))
    plain.db.execute("UPDATE audit_records SET status = 500 WHERE seq = 2")
    keyed = AuditStore(plain.db, migrate=False, chain_keys=KEY)
    report = adopt_key(keyed, cli_actor())
    assert not report.ok and report.problem is not None and report.problem.seq == 2
    assert keyed.count() == 3
    plain.db.close()
