"""The trail's keys over time: adopting a chain key, making checkpoints, resealing content.

- `adopt_key`: a chain written before `audit.chain_key` was set (or pruned before it) becomes
  keyed. It verifies the chain as it stands (trust on first use: run it where you trust the
  database as it is now), gives the anchor its MAC and appends one keyed record of the
  adoption, so that every older record is covered by a keyed record after it.
- `make_checkpoint`: the verified head, MAC'd, to keep off the database.
- `rekey`: prompt and response content sealed under the current data key: rows in clear (from
  before `storage.data_key` was set) are sealed, rows under an older key resealed; the chain is
  untouched (it hashes the clear text). Once it reports nothing left, the old key can go.

Rotating the chain key: put the new key first in `audit.chain_key` and keep the old one after
it; records keep verifying with the key they name. An old chain key can go once retention has
removed every record it sealed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel

from gateway.audit.actions import admin_record, newest_is_keyed
from gateway.audit.chain import GENESIS
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.record import AuditPrincipal, format_ts, utc_now
from gateway.audit.store import AuditStore, ChainPoint, content_context
from gateway.audit.verify import ChainProblem, VerifyReport, verify
from gateway.storage.sealing import SealError


class AdoptReport(BaseModel):
    """What `adopt_key` did."""

    ok: bool
    problem: ChainProblem | None = None
    anchor_authenticated: bool = False
    adoption_seq: int | None = None  # the keyed record appended, if one was needed


def adopt_key(store: AuditStore, actor: AuditPrincipal) -> AdoptReport:
    """Make the chain keyed from here on (see the module docstring); refuses a broken chain."""
    if not store.keyed:
        raise ValueError("no chain key: set audit.chain_key (RAYGATE_AUDIT_KEY) first")
    checked = verify(store, trust_legacy=True)
    if checked.problem is not None:
        return AdoptReport(ok=False, problem=checked.problem)
    state = store.chain_state()
    report = AdoptReport(ok=True)
    genesis = ChainPoint(seq=0, hash=GENESIS)
    if state.anchor != genesis and state.anchor_mac != store.anchor_mac(state.anchor):
        store.authenticate_anchor(state.anchor)
        report.anchor_authenticated = True
    if state.head.seq != state.anchor.seq and not newest_is_keyed(store):
        record = admin_record(actor, "audit.adopt_key", f"chain:{state.head.seq}")
        report.adoption_seq = store.append([record])[0].seq
    return report


def make_checkpoint(
    store: AuditStore, *, clock: Callable[[], datetime] = utc_now
) -> tuple[VerifyReport, Checkpoint | None]:
    """The verified head of the chain as a MAC'd checkpoint; None (with the report saying
    why) when the chain does not verify."""
    key = store.current_chain_key()
    if key is None:
        raise ValueError("checkpoints need the chain key: set audit.chain_key (RAYGATE_AUDIT_KEY)")
    report = verify(store)
    if report.problem is not None:
        return report, None
    checkpoint = Checkpoint(
        seq=report.head.seq,
        hash=report.head.hash,
        anchor_seq=report.anchor.seq,
        anchor_hash=report.anchor.hash,
        created_at=format_ts(clock()),
    )
    return report, checkpoint.signed(key)


class RekeyReport(BaseModel):
    """What `rekey` did."""

    resealed: int = 0
    unreadable: list[int] = []  # seqs whose content did not open: left as found, as evidence
    key_id: str


def rekey(store: AuditStore, *, page_size: int = 500) -> RekeyReport:
    """Seal every stored prompt and response under the current data key."""
    if store.sealer is None:
        raise ValueError("no data key: set storage.data_key (RAYGATE_DATA_KEY) first")
    sealer = store.sealer
    report = RekeyReport(key_id=sealer.current_key_id)
    after = 0
    while True:
        rows = store.rows_to_reseal(after, page_size)
        if not rows:
            return report
        for seq, record_id, prompt, response, content_key in rows:
            after = seq
            try:
                texts = [
                    _clear(store, record_id, column, value, content_key)
                    for column, value in (("prompt", prompt), ("response", response))
                ]
            except SealError:
                report.unreadable.append(seq)
                continue
            resealed = [
                None if text is None else sealer.seal(text, context=content_context(record_id, c))
                for c, text in zip(("prompt", "response"), texts, strict=True)
            ]
            if store.replace_content(seq, content_key, *resealed):
                report.resealed += 1


def _clear(
    store: AuditStore, record_id: str, column: str, value: str | None, content_key: str | None
) -> str | None:
    if value is None or content_key is None:
        return value  # in clear already (written before there was a data key)
    assert store.sealer is not None
    return store.sealer.open(value, context=content_context(record_id, column))
