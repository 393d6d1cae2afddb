"""The tamper-evident audit trail: one hash-chained record per gateway request.

The request path builds an `AuditRecord` and hands it to an `AuditWriter`, which commits it in
batches off the request path; `verify` walks the chain, `query` and `export` answer
compliance's questions, `retention` cuts the chain's old end without breaking it.
"""

from gateway.audit.actions import admin_record
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.config import AuditConfig
from gateway.audit.content import ContentPolicy, Redactor
from gateway.audit.record import AuditPrincipal, AuditRecord, PolicyDecision
from gateway.audit.store import AuditStore, ChainPoint
from gateway.audit.verify import ChainProblem, VerifyReport, verify
from gateway.audit.writer import AuditWriter, AuditWriterClosed

__all__ = [
    "AuditConfig",
    "AuditPrincipal",
    "AuditRecord",
    "AuditStore",
    "AuditWriter",
    "AuditWriterClosed",
    "ChainPoint",
    "ChainProblem",
    "Checkpoint",
    "ContentPolicy",
    "PolicyDecision",
    "Redactor",
    "VerifyReport",
    "admin_record",
    "verify",
]
