"""How prompts and responses are kept in the audit trail: not at all, as a hash, redacted, or
in full. Applied by the writer's thread, off the request path, before a record is chained."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.audit.record import AuditRecord, ContentMode

Redactor = Callable[[str], str]


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """The storage mode for prompts and for responses, and the redactor `redacted` uses.

    The default redactor is the identity until the policy engine provides one.
    """

    prompt: ContentMode = "hash"
    response: ContentMode = "hash"
    redactor: Redactor = field(default=_identity)

    def apply(self, record: AuditRecord) -> AuditRecord:
        """`record` with its raw prompt and response stored per this policy.

        A text whose mode is already set was treated before (a retried batch) and is kept.
        """
        update: dict[str, object] = {}
        if record.prompt_mode is None:
            update["prompt_mode"] = self.prompt
            update["prompt"] = self._keep(record.prompt, self.prompt)
        if record.response_mode is None:
            update["response_mode"] = self.response
            update["response"] = self._keep(record.response, self.response)
        return record.model_copy(update=update) if update else record

    def _keep(self, text: str | None, mode: ContentMode) -> str | None:
        if text is None or mode == "none":
            return None
        if mode == "hash":
            return hashlib.sha256(text.encode("utf-8")).hexdigest()
        kept = self.redactor(text) if mode == "redacted" else text
        # PostgreSQL's text cannot hold NUL; replacing it here keeps both backends identical.
        return kept.replace("\x00", "\ufffd")
