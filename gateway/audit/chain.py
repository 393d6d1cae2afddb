"""The hash chain: canonical serialisation of a record and the link between records.

A keyed record (one with `chain_key` set): `hash = HMAC-SHA256(key, prev_hash || canonical)`,
the key named by `chain_key` and held outside the database (`audit.chain_key`), so that whoever
can write the database but does not hold the key cannot forge, re-link or re-seal a record.
A record written without a key (before one was configured): `hash = sha256(prev_hash ||
canonical)`. Canonical is sorted keys, no whitespace, UTF-8, without `hash`. The record's own
`seq`, `prev_hash` and `chain_key` are inside the canonical form, so moving, relinking or
relabelling a record changes its hash too.

The same keys authenticate the chain's other moving part, its anchor (`anchor_mac`), and the
checkpoints an operator keeps off the database (`gateway.audit.checkpoint`), each under its
own domain so that no MAC can stand in for another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from gateway.audit.record import AuditRecord

GENESIS = "0" * 64
"""The `prev_hash` of the first record of a chain that was never pruned."""

CHAIN_PURPOSE = "audit-chain/v1"
"""What the chain's keys are derived for (`Keyring.derive`)."""

ChainKey = tuple[str, bytes]
"""A chain key: its id and its (derived) bytes."""

# Fields added to the record (and to its parts) after the first release: hashed only when set,
# so that records written before they existed still verify.
_ADDED_TO_RECORD = ("cost_avoided_usd", "admin_action", "admin_target", "chain_key")
_ADDED_TO_PRINCIPAL = ("key_id",)
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
        trimmed["decisions"] = [_trim(d, _ADDED_TO_DECISION) for d in trimmed["decisions"]]
    if trimmed.get("principal") is not None:
        trimmed["principal"] = _trim(trimmed["principal"], _ADDED_TO_PRINCIPAL)
    return trimmed


def _trim(part: dict[str, Any], added: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if not (k in added and v is None)}


def link_hash(prev_hash: str, record: AuditRecord, key: bytes | None = None) -> str:
    """The hash `record` must carry when it follows a record whose hash is `prev_hash`;
    `key` is the chain key named by `record.chain_key` (None for an unkeyed record)."""
    return _digest(prev_hash, canonical(record), key)


def _digest(prev_hash: str, canonical_record: bytes, key: bytes | None) -> str:
    if key is None:
        digest = hashlib.sha256(prev_hash.encode("ascii"))
        digest.update(canonical_record)
        return digest.hexdigest()
    return hmac.new(key, prev_hash.encode("ascii") + canonical_record, hashlib.sha256).hexdigest()


def seal(record: AuditRecord, seq: int, prev_hash: str, key: ChainKey | None = None) -> AuditRecord:
    """`record` placed at `seq` after `prev_hash`, with its hash (keyed with `key` if given)."""
    body = seal_json(record.model_dump(mode="json"), seq, prev_hash, key)
    update = {k: body.get(k) for k in ("seq", "prev_hash", "hash", "chain_key")}
    return record.model_copy(update=update)


def seal_json(
    body: dict[str, Any], seq: int, prev_hash: str, key: ChainKey | None = None
) -> dict[str, Any]:
    """A record's JSON form placed at `seq` after `prev_hash`, with its hash (in place).

    The same as `seal` on the record, for callers that need the JSON form anyway.
    """
    body.pop("hash", None)
    body["seq"] = seq
    body["prev_hash"] = prev_hash
    body["chain_key"] = key[0] if key is not None else None
    body["hash"] = _digest(prev_hash, canonical_json(body), key[1] if key is not None else None)
    return body


def point_mac(key: ChainKey, domain: str, message: bytes) -> str:
    """`key_id:hex` MAC of `message` under `domain` (anchor, checkpoint)."""
    key_id, secret = key
    mac = hmac.new(secret, domain.encode("ascii") + b"\x00" + message, hashlib.sha256)
    return f"{key_id}:{mac.hexdigest()}"


def mac_matches(stored: str, key: bytes | None, domain: str, message: bytes) -> bool:
    """Whether `stored` (`key_id:hex`) is the MAC of `message` under `key`."""
    key_id, _, _ = stored.partition(":")
    if key is None:
        return False
    return hmac.compare_digest(stored, point_mac((key_id, key), domain, message))


def anchor_message(seq: int, hash_: str) -> bytes:
    """What an anchor's MAC covers: its seq and the hash of the record there."""
    return f"{seq}:{hash_}".encode("ascii")


def mac_key_id(stored: str) -> str:
    """The key id a `key_id:hex` MAC names."""
    return stored.partition(":")[0]
