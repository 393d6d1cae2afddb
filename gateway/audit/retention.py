"""Retention: delete the trail's oldest records and keep what remains verifiable.

The cut is a prefix of the chain, made in one transaction that also moves the anchor (the seq
and hash the remaining chain starts from), so `verify` starts there. The part to delete is
verified first: pruning never erases the evidence of tampering.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel

from gateway.audit.record import format_ts, utc_now
from gateway.audit.store import AuditStore, ChainPoint
from gateway.audit.verify import ChainProblem, verify


class PruneReport(BaseModel):
    """What a prune did: records deleted, the anchor now, or the problem that stopped it."""

    deleted: int
    anchor: ChainPoint
    problem: ChainProblem | None = None


def prune(
    store: AuditStore, older_than: timedelta, *, clock: Callable[[], datetime] = utc_now
) -> PruneReport:
    """Delete the records older than `older_than` that start the chain.

    Records are appended in commit order, not strictly in time order, so a record older than
    the cutoff that follows a newer one waits for the next prune.
    """
    cutoff = format_ts(clock() - older_than)
    state = store.chain_state()
    last = store.last_seq_before(cutoff)
    if last <= state.anchor.seq:
        return PruneReport(deleted=0, anchor=state.anchor)
    checked = verify(store, through_seq=last)
    if checked.problem is not None:
        return PruneReport(deleted=0, anchor=state.anchor, problem=checked.problem)
    end = checked.verified_through
    deleted = store.cut_through(end.seq, anchor=checked.anchor, hash_at_seq=end.hash)
    return PruneReport(deleted=deleted, anchor=end)
