"""Verification: walk the stored chain from its anchor to its head and say where it breaks.

Detected and located: a changed column (the recomputed hash differs, or the row is not in the
form the writer stores), a deleted record (a gap in seq; the last one: the chain ends before
the head row), an inserted record (a link breaks, or it sits past the head or before the
anchor), records swapped or reordered (a link breaks), a record rewritten together with its
hash (the next record's link breaks), and side-table rows that disagree with their record.

What a hash chain cannot show on its own: someone able to write the database can rewrite the
tail and the head row together, or cut the start and move the anchor. Keep the head that
`verify` reports somewhere else (a ticket, a log shipped off the machine) and pass it back as
`expected_head` to close that gap.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from gateway.audit import schema
from gateway.audit.chain import link_hash
from gateway.audit.record import AuditRecord
from gateway.audit.store import AuditStore, ChainPoint, ChainState

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


class _Broken(Exception):
    def __init__(self, problem: ChainProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def verify(
    store: AuditStore,
    *,
    through_seq: int | None = None,
    expected_head: ChainPoint | None = None,
    page_size: int = 1000,
) -> VerifyReport:
    """Check the chain from the anchor to the head (or only up to `through_seq`).

    Records appended while this runs are past the head it read and are left for the next run;
    a prune that moves the anchor meanwhile restarts the walk from the new anchor.
    """
    while True:
        state = store.chain_state()
        end = state.head.seq if through_seq is None else through_seq
        walk = _Walk(store, state.anchor)
        try:
            walk.through(end, page_size, end_is_head=through_seq is None)
            if through_seq is None:
                _check_ends(store, walk.at, state, expected_head)
        except _Broken as broken:
            moved = _anchor_moved_past(store, walk.at.seq)
            if broken.problem.kind in ("missing", "truncated") and moved:
                continue
            return VerifyReport(
                ok=False,
                checked=walk.checked,
                anchor=state.anchor,
                head=state.head,
                verified_through=walk.at,
                problem=broken.problem,
            )
        return VerifyReport(
            ok=True,
            checked=walk.checked,
            anchor=state.anchor,
            head=state.head,
            verified_through=walk.at,
        )


class _Walk:
    """The walk along the chain: where it stands and how many records it checked."""

    def __init__(self, store: AuditStore, anchor: ChainPoint) -> None:
        self.store = store
        self.at = anchor
        self.checked = 0

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
            rows = self.store.rows(after_seq=self.at.seq, through_seq=end, limit=page_size)
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
            record = schema.from_row(row)
        except (ValueError, TypeError, ValidationError) as exc:
            raise _Broken(
                ChainProblem(
                    kind="unreadable",
                    seq=seq,
                    record_id=record_id,
                    detail=f"the stored row is not a valid record: {exc}",
                )
            ) from None
        self._check(record, row, index)
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
        if link_hash(self.at.hash, record) != record.hash or schema.to_row(record) != row:
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
        rows = store.rows(after_seq=expected.seq - 1, through_seq=expected.seq, limit=1)
        found = rows[0][-1] if rows else None
    if found != expected.hash:
        raise _Broken(
            ChainProblem(
                kind="head_mismatch",
                seq=expected.seq,
                detail="the record at the head you kept has another hash now: the chain "
                "was rewritten from there or before",
            )
        )


def _anchor_moved_past(store: AuditStore, seq: int) -> bool:
    return store.chain_state().anchor.seq > seq
