"""The cache's entries as an administrator browses them (`GET /admin/cache/entries`), read from
the entry log in the gateway's database, newest first.

An entry holds a prompt and its answer, which the audit trail may keep only as a hash: the
browser shows them no more than the trail keeps prompts and responses (`audit.prompt`,
`audit.response`), so browsing the cache never reveals what the audit settings withhold.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from gateway.audit.content import ContentPolicy
from gateway.audit.record import AuditRecord, ContentMode, Timestamp
from gateway.cache.log import CacheLog, LoggedEntry
from gateway.config import GatewayConfig
from gateway.policy.redaction import redact_pii
from gateway.storage import Database
from gateway.storage.sealing import Sealer


class BrowsedEntry(BaseModel):
    """One entry: what it answers, and its texts as the audit settings allow them to be seen."""

    id: int
    model: str = Field(description="the model alias it answers")
    scope: str = Field(description="the scope hash it is served in (invalidate by it)")
    created_at: Timestamp
    conversation: bool = Field(description="stored with earlier turns as its context")
    prompt: str | None = Field(description="the prompt, kept as prompt_mode says")
    prompt_mode: ContentMode
    answer: str | None = Field(description="the answer, kept as answer_mode says")
    answer_mode: ContentMode


class EntryPage(BaseModel):
    """A page of entries, newest first; `next_before` asks for the next one (None: last)."""

    entries: list[BrowsedEntry]
    next_before: int | None = None


class CacheBrowser:
    """Pages of the entry log, their texts shown per the audit trail's content settings.
    Blocking: call it from a worker thread."""

    def __init__(self, entry_log: CacheLog, shown: ContentPolicy) -> None:
        self._log = entry_log
        self._shown = shown

    @classmethod
    def for_gateway(cls, config: GatewayConfig, db: Database) -> CacheBrowser:
        """The browser of the gateway's entry log, showing texts as its audit trail keeps them."""
        sealer = Sealer.from_keyring(config.storage.data_keyring())
        shown = ContentPolicy(config.audit.prompt, config.audit.response, redact_pii)
        return cls(CacheLog(db, sealer=sealer), shown)

    def page(self, limit: int, *, before: int | None = None, model: str | None = None) -> EntryPage:
        """At most `limit` entries with ids below `before` (default: the newest), for `model`."""
        found = self._log.entries(limit + 1, before=before, model=model)
        entries = [self._browsed(entry) for entry in found[:limit]]
        more = len(found) > limit
        return EntryPage(entries=entries, next_before=entries[-1].id if more else None)

    def _browsed(self, entry: LoggedEntry) -> BrowsedEntry:
        # The audit's own rule, applied to the entry's texts as if they were a record's.
        kept = self._shown.apply(AuditRecord(prompt=entry.text, response=entry.response))
        assert kept.prompt_mode is not None and kept.response_mode is not None  # set by apply
        return BrowsedEntry(
            id=entry.entry_id,
            model=entry.model,
            scope=entry.scope,
            created_at=datetime.fromtimestamp(entry.created_at, UTC),
            conversation=bool(entry.context),
            prompt=kept.prompt,
            prompt_mode=kept.prompt_mode,
            answer=kept.response,
            answer_mode=kept.response_mode,
        )
