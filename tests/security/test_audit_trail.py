"""Findings 3 and 8 on the live trail: prompts are kept (in `full` mode) as they were sent on,
never with the values the policy took out; what is stored is sealed on disk under the data
key; the chain is keyed, and a tail cut or an anchor moved in the database is caught by
`raygate audit verify` (on a copy of the live database, so the gateway keeps its own)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.security.conftest import Target

EMAIL = "ana@example.org"
ZW_EMAIL = "an\u200ba@exa\u200dmple\u00ad.org"


def _marker() -> str:
    """Words found nowhere else: searching the database for them finds only this request."""
    return f"zebra{uuid.uuid4().hex[:10]}quartz"


def _stored_bytes(database: Path) -> bytes:
    """The database file and its write-ahead log, as an attacker copying them would read."""
    return b"".join(
        path.read_bytes() for path in database.parent.glob(database.name + "*") if path.is_file()
    )


def test_a_redacted_prompt_is_kept_as_it_was_sent_on(target: Target) -> None:
    client = target.openai(target.issue("contractors").secret)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": f"write to {ZW_EMAIL} today"}]
    )
    record = target.record(raw.headers["x-raygate-request-id"])
    assert record["prompt_mode"] == "full"
    assert record["prompt"] == "user: write to [EMAIL_1] today"


def test_a_blocked_prompt_is_kept_with_its_values_replaced(target: Target) -> None:
    card = "4111\u00ad1111\u00ad1111\u00ad1111"
    client = target.openai(target.issue("contractors").secret)
    with pytest.raises(openai.PermissionDeniedError) as blocked:
        client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": f"charge {card} for it"}]
        )
    record = target.record(blocked.value.response.headers["x-raygate-request-id"])
    assert record["status"] == 403
    assert record["decisions"][0]["rule"] == "pii.CREDIT_CARD"
    assert "1111" not in record["prompt"] and "charge" in record["prompt"]


def test_stored_prompts_and_answers_are_sealed_on_disk(target: Target) -> None:
    marker = _marker()
    client = target.openai(target.issue().secret)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": f"note {marker}"}]
    )
    request_id = raw.headers["x-raygate-request-id"]
    record = target.record(request_id)
    assert marker in record["prompt"] and marker in record["response"]  # opened with the key
    with sqlite3.connect(f"file:{target.database}?mode=ro", uri=True) as db:
        key, prompt = db.execute(
            "SELECT content_key, prompt FROM audit_records WHERE request_id = ?", (request_id,)
        ).fetchone()
    assert key == "data1" and marker not in prompt
    assert marker.encode() not in _stored_bytes(target.database)


def test_a_cached_prompt_and_answer_are_sealed_on_disk(target: Target) -> None:
    marker = _marker()
    key = target.issue().secret
    body = {"model": "cached-small", "messages": [{"role": "user", "content": f"note {marker}"}]}
    for expected in ("miss", "exact"):  # the second answer comes from the stored entry
        response = httpx.post(
            f"{target.v1}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert response.headers["x-raygate-cache"] == expected
    assert marker.encode() not in _stored_bytes(target.database)


def test_an_answer_the_policy_redacted_is_not_kept_raw(target: Target) -> None:
    client = target.openai(target.issue("reviewers").secret)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": f"echo {EMAIL}"}]
    )
    assert EMAIL not in (raw.parse().choices[0].message.content or "")
    record = target.record(raw.headers["x-raygate-request-id"])
    assert EMAIL not in record["response"]


def test_the_live_trail_is_keyed_and_verifies(target: Target) -> None:
    client = target.openai(target.issue().secret)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": "hello"}]
    )
    assert target.record(raw.headers["x-raygate-request-id"])["chain_key"] == "chain1"
    verified = target.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "keyed" in verified.stdout and "UNKEYED" not in verified.stdout


def _copy_of_the_trail(target: Target, tmp_path: Path) -> tuple[Path, str]:
    """A consistent copy of the live database (SQLite's backup), and its URL."""
    copy = tmp_path / "copy.db"
    with sqlite3.connect(f"file:{target.database}?mode=ro", uri=True) as live:
        with sqlite3.connect(copy) as out:
            live.backup(out)
    return copy, f"sqlite:///{copy}"


def _cut_from(db: sqlite3.Connection, first_gone: int) -> None:
    """Delete every record from seq `first_gone` on, side tables included."""
    for table in ("audit_records", "audit_groups", "audit_topics", "audit_actions"):
        db.execute(f"DELETE FROM {table} WHERE seq >= ?", (first_gone,))


def test_a_tail_cut_with_its_head_rewritten_is_caught_by_a_checkpoint(
    target: Target, tmp_path: Path
) -> None:
    for _ in range(3):
        target.openai(target.issue().secret).models.list()
    copy, url = _copy_of_the_trail(target, tmp_path)
    checkpoint = tmp_path / "checkpoint.json"
    made = target.cli("audit", "checkpoint", "--db", url, "--out", str(checkpoint))
    assert made.returncode == 0, made.stderr
    head = json.loads(checkpoint.read_text())["seq"]
    assert (
        target.cli("audit", "verify", "--db", url, "--checkpoint", str(checkpoint)).returncode == 0
    )

    with sqlite3.connect(copy) as db:  # the attacker: the last 3 records and the head row
        _cut_from(db, head - 2)
        seq, hash_ = db.execute(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        db.execute("UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'head'", (seq, hash_))

    alone = target.cli("audit", "verify", "--db", url)
    assert alone.returncode == 0, alone.stderr  # a shorter chain is a valid chain...
    caught = target.cli("audit", "verify", "--db", url, "--checkpoint", str(checkpoint))
    assert caught.returncode != 0  # ...that no longer reaches the checkpoint
    assert "BROKEN" in caught.stderr


def test_records_deleted_from_the_start_with_the_anchor_moved_are_caught(
    target: Target, tmp_path: Path
) -> None:
    target.openai(target.issue().secret).models.list()
    copy, url = _copy_of_the_trail(target, tmp_path)
    with sqlite3.connect(copy) as db:
        first = db.execute("SELECT MIN(seq) FROM audit_records").fetchone()[0]
        new_start = first + 4
        anchor_hash = db.execute(
            "SELECT hash FROM audit_records WHERE seq = ?", (new_start,)
        ).fetchone()[0]
        for table in ("audit_records", "audit_groups", "audit_topics", "audit_actions"):
            db.execute(f"DELETE FROM {table} WHERE seq <= ?", (new_start,))
        db.execute(
            "UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'anchor'",
            (new_start, anchor_hash),
        )
    caught = target.cli("audit", "verify", "--db", url)
    assert caught.returncode != 0
    assert "anchor" in caught.stderr
