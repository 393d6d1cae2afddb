"""The hash chain: canonical serialisation of a record and the link between records.

`hash = sha256(prev_hash || canonical JSON of the record without its hash)`, where canonical is
sorted keys, no whitespace, UTF-8. The record's own `seq` and `prev_hash` are inside the
canonical form, so moving or relinking a record changes its hash too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gateway.audit.record import AuditRecord

GENESIS = "0" * 64
"""The `prev_hash` of the first record of a chain that was never pruned."""


# Fields added to the record (and to its policy decisions) after the first release: hashed
# only when set, so that records written before they existed still verify.
_ADDED_TO_RECORD = ("cost_avoided_usd",)
_ADDED_TO_DECISION = ("score", "threshold", "detail")


def canonical(record: AuditRecord) -> bytes:
    """The record (without `hash`) as canonical JSON bytes."""
    return canonical_json(record.model_dump(mode="json", exclude={"hash"}))


def canonical_json(body: dict[str, Any]) -> bytes:
    """A record's JSON form (`model_dump(mode="json")`, without `hash`) as canonical bytes."""
    body = _without_unset_additions(body)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _without_unset_additions(body: dict[str, Any]) -> dict[str, Any]:
    trimmed = {k: v for k, v in body.items() if not (k in _ADDED_TO_RECORD and v is None)}
    if "decisions" in trimmed:
        trimmed["decisions"] = [
            {k: v for k, v in d.items() if not (k in _ADDED_TO_DECISION and v is None)}
            for d in trimmed["decisions"]
        ]
    return trimmed


def link_hash(prev_hash: str, record: AuditRecord) -> str:
    """The hash `record` must carry when it follows a record whose hash is `prev_hash`."""
    return _digest(prev_hash, canonical(record))


def _digest(prev_hash: str, canonical_record: bytes) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_record)
    return digest.hexdigest()


def seal(record: AuditRecord, seq: int, prev_hash: str) -> AuditRecord:
    """`record` placed at `seq` after `prev_hash`, with its hash."""
    body = seal_json(record.model_dump(mode="json"), seq, prev_hash)
    return record.model_copy(update={"seq": seq, "prev_hash": prev_hash, "hash": body["hash"]})


def seal_json(body: dict[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """A record's JSON form placed at `seq` after `prev_hash`, with its hash (in place).

    The same as `seal` on the record, for callers that need the JSON form anyway.
    """
    body.pop("hash", None)
    body["seq"] = seq
    body["prev_hash"] = prev_hash
    body["hash"] = _digest(prev_hash, canonical_json(body))
    return body
