"""Verification: walk the stored chain from its anchor to its head and say where it breaks.

Detected and located: a changed column (the recomputed hash differs, or the row is not in the
form the writer stores), a deleted record (a gap in seq; the last one: the chain ends before
the head row), an inserted record (a link breaks, or it sits past the head or before the
anchor), records swapped or reordered (a link breaks), a record rewritten together with its
hash (the next record's link breaks), and side-table rows that disagree with their record.

With the chain key (`audit.chain_key`) the chain is keyed, and verification also refuses:
a record re-sealed by someone without the key (its HMAC does not match, or it poses as an
unkeyed record after keyed ones, or at the tail), a record naming a key this gateway does not
hold, and an anchor without a valid MAC (records deleted from the start and the anchor moved
after them). Records written before the key was set verify as plain SHA-256, as long as a
keyed record follows them (`raygate audit adopt-key` writes one at once).

What no chain shows from the inside: its tail cut off together with the head row. Keep a
checkpoint off the database (`raygate audit checkpoint`, a MAC'd head) and pass it back
(`checkpoint=`), or at least the head `verify` reports (`expected_head=`), to close that gap.
A chain without a key also cannot tell an anchor moved by retention from one moved by a
forger, nor a chain rewritten from the start; that is what the key is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from gateway.audit import schema
from gateway.audit.chain import GENESIS, anchor_message, link_hash, mac_key_id, mac_matches
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.record import AuditRecord
from gateway.audit.store import ANCHOR_DOMAIN, AuditStore, ChainPoint, ChainState
from gateway.progress import Progress
from gateway.storage.sealing import SealError

ProblemKind = Literal[
    "altered",
    "unreadable",
    "broken_link",
    "missing",
    "truncated",
    "beyond_head",
    "before_anchor",
    "index_mismatch",
    "head_mismatch",
    "unkeyed",
    "unknown_key",
    "anchor_unauthenticated",
    "checkpoint_invalid",
]


class ChainProblem(BaseModel):
    """The first place the chain is wrong."""

    kind: ProblemKind
    seq: int | None = None
    record_id: str | None = None
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "chain"
        who = f" (record {self.record_id})" if self.record_id else ""
        return f"{where}{who}: {self.kind}: {self.detail}"


class VerifyReport(BaseModel):
    """The outcome of a verification."""

    ok: bool
    checked: int = Field(description="records whose hash and link were checked")
    anchor: ChainPoint = Field(description="where the walk started")
    head: ChainPoint = Field(description="the head row as read at the start")
    verified_through: ChainPoint = Field(description="the last point found intact")
    problem: ChainProblem | None = None
    keyed: bool = Field(False, description="checked with the chain key: forgeries would show")
    unkeyed: int = Field(0, description="records checked as plain SHA-256 (before the key)")


class _Broken(Exception):
    def __init__(self, problem: ChainProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def verify(
    store: AuditStore,
    *,
    through_seq: int | None = None,
    expected_head: ChainPoint | None = None,
    checkpoint: Checkpoint | None = None,
    trust_legacy: bool = False,
    page_size: int = 1000,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check the chain from the anchor to the head (or only up to `through_seq`).

    On a keyed store (one holding chain keys) the chain must be keyed: see the module
    docstring. `trust_legacy` accepts an unkeyed tail and an anchor without a MAC, as they
    are before a chain adopts its key (only `adopt_key` uses it). Records appended while this
    runs are past the head it read and are left for the next run; a prune that moves the
    anchor meanwhile restarts the walk from the new anchor. `progress` is told the records
    checked, a page at a time.
    """
    while True:
        state = store.chain_state()
        end = state.head.seq if through_seq is None else through_seq
        walk = _Walk(store, state.anchor, progress)
        try:
            if store.keyed and not trust_legacy:
                _check_anchor_mac(store, state)
            walk.through(end, page_size, end_is_head=through_seq is None)
            if through_seq is None:
                if store.keyed and not trust_legacy:
                    walk.check_keyed_tail()
                _check_ends(store, walk.at, state, expected_head)
                if checkpoint is not None:
                    _check_checkpoint(store, checkpoint, state)
        except _Broken as broken:
            moved = _anchor_moved_past(store, walk.at.seq)
            if broken.problem.kind in ("missing", "truncated") and moved:
                continue
            return walk.report(state, broken.problem)
        return walk.report(state, None)


def _check_anchor_mac(store: AuditStore, state: ChainState) -> None:
    anchor = state.anchor
    if anchor == ChainPoint(seq=0, hash=GENESIS):
        return  # never pruned: nothing was cut, nothing to authenticate
    mac = state.anchor_mac
    key = store.chain_key(mac_key_id(mac)) if mac else None
    if mac is None or not mac_matches(
        mac, key, ANCHOR_DOMAIN, anchor_message(anchor.seq, anchor.hash)
    ):
        why = (
            "has no MAC"
            if mac is None
            else f"names key {mac_key_id(mac)!r}, which this gateway does not hold"
            if key is None
            else "has a MAC that does not match"
        )
        raise _Broken(
            ChainProblem(
                kind="anchor_unauthenticated",
                seq=anchor.seq,
                detail=f"the anchor (the chain starts after seq {anchor.seq}) {why}: records "
                "were deleted from the start and the anchor moved without the chain key (a "
                "chain pruned before it was keyed: run `raygate audit adopt-key` once)",
            )
        )


class _Walk:
    """The walk along the chain: where it stands and how many records it checked."""

    def __init__(self, store: AuditStore, anchor: ChainPoint, progress: Progress | None) -> None:
        self.store = store
        self.progress = progress
        self.at = anchor
        self.checked = 0
        self.unkeyed = 0
        self.keyed_seen = False
        self.unkeyed_since: tuple[int, str] | None = None  # first unkeyed record at the tail

    def report(self, state: ChainState, problem: ChainProblem | None) -> VerifyReport:
        return VerifyReport(
            ok=problem is None,
            checked=self.checked,
            anchor=state.anchor,
            head=state.head,
            verified_through=self.at,
            problem=problem,
            keyed=self.store.keyed,
            unkeyed=self.unkeyed,
        )

    def check_keyed_tail(self) -> None:
        """On a keyed store, the newest record must be keyed: an unkeyed tail is either a
        chain that has not adopted its key yet, or one rewritten by someone without it."""
        if self.unkeyed_since is None:
            return
        seq, record_id = self.unkeyed_since
        raise _Broken(
            ChainProblem(
                kind="unkeyed",
                seq=seq,
                record_id=record_id,
                detail=f"records from seq {seq} to the head are not keyed: the chain was "
                "rewritten by someone without the chain key, or it has not adopted the key "
                "since it was set (`raygate audit adopt-key`)",
            )
        )

    def through(self, end: int, page_size: int, *, end_is_head: bool) -> None:
        stray = self.store.first_at_or_before_anchor()
        if stray is not None:
            raise _Broken(
                ChainProblem(
                    kind="before_anchor",
                    seq=stray[0],
                    record_id=stray[1],
                    detail=f"a record sits at or before the anchor (seq {self.at.seq})",
                )
            )
        while self.at.seq < end:
            rows = self.store.stored_rows(after_seq=self.at.seq, through_seq=end, limit=page_size)
            if not rows:
                raise _Broken(
                    ChainProblem(
                        kind="truncated" if end_is_head else "missing",
                        seq=self.at.seq + 1,
                        detail=f"the chain ends at seq {self.at.seq} but should reach seq "
                        f"{end}{' (the head)' if end_is_head else ''}: records were deleted",
                    )
                )
            index = self.store.index_entries(rows[0][0], rows[-1][0])
            for row in rows:
                self._step(row, index.get(row[0], {}))
            if self.progress is not None:
                self.progress(len(rows))

    def _step(self, row: tuple[Any, ...], index: dict[str, set[str]]) -> None:
        seq, record_id = row[0], row[1]
        if seq != self.at.seq + 1:
            raise _Broken(
                ChainProblem(
                    kind="missing",
                    seq=self.at.seq + 1,
                    detail=f"no record at seq {self.at.seq + 1}; the next one is seq {seq} "
                    f"(record {record_id}): records were deleted",
                )
            )
        try:
            plain = self.store.open_row(row)
            record = schema.from_row(plain)
        except SealError as exc:
            raise _Broken(
                ChainProblem(
                    kind="unreadable",
                    seq=seq,
                    record_id=record_id,
                    detail=f"the stored content does not open: {exc}",
                )
            ) from None
        except (ValueError, TypeError, ValidationError) as exc:
            raise _Broken(
                ChainProblem(
                    kind="unreadable",
                    seq=seq,
                    record_id=record_id,
                    detail=f"the stored row is not a valid record: {exc}",
                )
            ) from None
        self._check(record, plain, index)
        self.at = ChainPoint(seq=seq, hash=record.hash or "")
        self.checked += 1

    def _check(self, record: AuditRecord, row: tuple[Any, ...], index: dict[str, set[str]]) -> None:
        def broken(kind: ProblemKind, detail: str) -> _Broken:
            problem = ChainProblem(kind=kind, seq=record.seq, record_id=record.id, detail=detail)
            return _Broken(problem)

        if record.prev_hash != self.at.hash:
            raise broken(
                "broken_link",
                f"prev_hash does not match the hash of seq {self.at.seq}: a record was "
                f"inserted, moved, or seq {self.at.seq} was rewritten with a new hash",
            )
        key = self._key_for(record, broken)
        if link_hash(self.at.hash, record, key) != record.hash or schema.to_row(record) != row:
            changed = _changed_columns(record, row)
            raise broken(
                "altered",
                "the stored contents do not match the record's hash"
                + (f" (changed: {', '.join(changed)})" if changed else ""),
            )
        expected = schema.index_values(record)
        for table, _ in schema.INDEX_TABLES:
            if set(expected[table]) != index.get(table, set()):
                raise broken("index_mismatch", f"{table} does not match the record")

    def _key_for(
        self, record: AuditRecord, broken: Callable[[ProblemKind, str], _Broken]
    ) -> bytes | None:
        """The chain key `record` was sealed with (None: an unkeyed record, checked as plain
        SHA-256, which a keyed store accepts only before its first keyed record)."""
        if record.chain_key is None:
            self.unkeyed += 1
            if self.store.keyed and self.keyed_seen:
                raise broken(
                    "unkeyed",
                    "an unkeyed record follows keyed ones: it was re-sealed by someone "
                    "without the chain key",
                )
            if self.unkeyed_since is None:
                self.unkeyed_since = (record.seq or 0, record.id)
            return None
        key = self.store.chain_key(record.chain_key)
        if key is None:
            held = ", ".join(self.store.chain_key_ids) or "none: set audit.chain_key"
            raise broken(
                "unknown_key",
                f"sealed with chain key {record.chain_key!r}, which this gateway does not "
                f"hold (it holds {held}); keep retired keys in the keyring while their "
                "records remain",
            )
        self.keyed_seen = True
        self.unkeyed_since = None
        return key


def _changed_columns(record: AuditRecord, row: tuple[Any, ...]) -> list[str]:
    # The hash cannot name the edited column; a row that no longer round-trips can.
    again = schema.to_row(record)
    return [c for c, a, b in zip(schema.COLUMNS, again, row, strict=True) if a != b]


def _check_ends(
    store: AuditStore, at: ChainPoint, state: ChainState, expected: ChainPoint | None
) -> None:
    head = state.head
    if at != head:
        raise _Broken(
            ChainProblem(
                kind="head_mismatch",
                seq=head.seq,
                detail=f"the head row says hash {head.hash[:16]}... but the record there has "
                f"{at.hash[:16]}...",
            )
        )
    beyond = store.first_beyond_head()
    if beyond is not None:
        raise _Broken(
            ChainProblem(
                kind="beyond_head",
                seq=beyond[0],
                record_id=beyond[1],
                detail="a record sits past the chain's head: it was inserted without the chain",
            )
        )
    if expected is not None:
        _check_known_head(store, expected, state)


def _check_known_head(store: AuditStore, expected: ChainPoint, state: ChainState) -> None:
    if expected.seq < state.anchor.seq:
        return  # retention has removed that part of the chain since
    if expected.seq > state.head.seq:
        raise _Broken(
            ChainProblem(
                kind="truncated",
                seq=state.head.seq + 1,
                detail=f"the head you kept is at seq {expected.seq} but the chain ends at seq "
                f"{state.head.seq}: records were deleted and the head row rewritten",
            )
        )
    found: str | None = state.anchor.hash
    if expected.seq != state.anchor.seq:
        found = store.hash_at(expected.seq)
    if found != expected.hash:
        raise _Broken(
            ChainProblem(
                kind="head_mismatch",
                seq=expected.seq,
                detail="the record at the head you kept has another hash now: the chain "
                "was rewritten from there or before",
            )
        )


def _check_checkpoint(store: AuditStore, checkpoint: Checkpoint, state: ChainState) -> None:
    if not checkpoint.authentic(store):
        raise _Broken(
            ChainProblem(
                kind="checkpoint_invalid",
                seq=checkpoint.seq,
                detail="the checkpoint's MAC does not match under the chain key it names: "
                "it was edited, or made with a key this gateway does not hold",
            )
        )
    _check_known_head(store, checkpoint.head, state)


def _anchor_moved_past(store: AuditStore, seq: int) -> bool:
    return store.chain_state().anchor.seq > seq
