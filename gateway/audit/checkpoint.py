"""Checkpoints: the chain's head, MAC'd with the chain key, kept off the database.

A keyed chain stops anyone without the key from forging, re-linking or re-sealing records and
from moving the anchor. What no chain can show from the inside is its own tail cut off: records
deleted from the end together with the head row still form a valid, shorter chain. A checkpoint
closes that: `raygate audit checkpoint` verifies the chain and writes its head (seq, hash), the
anchor and the time, MAC'd under the current chain key, to a file the operator keeps elsewhere
(a ticket, object storage with retention, a log shipped off the machine). `raygate audit verify
--checkpoint FILE` later checks that the chain still reaches that head with that hash.

The MAC means the file can sit somewhere less trusted: an edited checkpoint does not verify.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.audit.chain import ChainKey, mac_key_id, mac_matches, point_mac
from gateway.audit.store import AuditStore, ChainPoint

CHECKPOINT_DOMAIN = "raygate-audit-checkpoint"


class Checkpoint(BaseModel):
    """A verified head of the chain, as an operator stores it."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["raygate-audit-checkpoint/1"] = "raygate-audit-checkpoint/1"
    seq: int = Field(description="the head's seq when the checkpoint was made")
    hash: str = Field(description="the hash of the record at `seq`")
    anchor_seq: int = Field(description="where the chain started then (after retention)")
    anchor_hash: str
    created_at: str = Field(description="when, UTC ISO 8601")
    mac: str = Field("", description="`key_id:hex` HMAC of the other fields")

    @property
    def head(self) -> ChainPoint:
        """The head the checkpoint vouches for."""
        return ChainPoint(seq=self.seq, hash=self.hash)

    def signed(self, key: ChainKey) -> Checkpoint:
        """This checkpoint with its MAC under `key`."""
        return self.model_copy(update={"mac": point_mac(key, CHECKPOINT_DOMAIN, self._message())})

    def authentic(self, store: AuditStore) -> bool:
        """Whether the MAC is right under the chain key it names (which `store` must hold)."""
        if not self.mac:
            return False
        key = store.chain_key(mac_key_id(self.mac))
        return mac_matches(self.mac, key, CHECKPOINT_DOMAIN, self._message())

    def _message(self) -> bytes:
        body = self.model_dump(exclude={"mac"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def dumps(self) -> str:
        """The checkpoint as the file holds it."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def loads(cls, text: str) -> Checkpoint:
        """A checkpoint from its file; ValueError if it is not one."""
        return cls.model_validate_json(text)
