"""What happened to one request, gathered as it goes, for its audit record.

Each stage notes what it learned on the request's `Exchange` (`request.state.exchange`): the
caller, the model, the route, the usage, the answer's text, the outcome. The API turns it into
one `AuditRecord` when the response is complete: at once for a JSON answer, at the end of the
stream for a streamed one (completed, failed, or abandoned by the client).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.accounting.meter import Admission
from gateway.audit.record import AuditPrincipal, AuditRecord, CachePhase, PolicyDecision
from gateway.identity.access import Grant
from gateway.identity.principal import Principal
from gateway.routing.router import Route


@dataclass
class Exchange:
    """The audit-relevant facts of one request."""

    request_id: str
    path: str
    client_address: str | None
    arrived: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    grant: Grant | None = None  # what the caller may do, resolved once with the principal
    model: str | None = None
    prompt: str | None = None
    route: Route | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    response_parts: list[str] = field(default_factory=list)
    status: int | None = None
    error_code: str | None = None
    usage: Any = None  # the answer's OpenAI usage object, once known
    cost_usd: float | None = None
    admission: Admission | None = None  # what the meter granted before the call
    decisions: list[PolicyDecision] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)  # detected by the policy's topic rules
    redacted: dict[str, str] = field(default_factory=dict)  # placeholder -> value, this request
    streaming: bool = False  # a stream writes its record when it ends, not with the headers
    cache_phase: CachePhase | None = None  # None: the cache did not apply
    similarity: float | None = None
    cache_replica: str | None = None  # the cache replica that looked the request up
    cost_avoided_usd: float | None = None  # what a cache hit saved, at the target's prices
    embedding: Any = None  # the request's embedding (numpy row), computed once and shared
    embedded_text: str | None = None  # the text `embedding` is of

    def note_usage(self, usage: Any) -> None:
        """Take token counts from an OpenAI usage object (or None)."""
        if usage is None:
            return
        self.usage = usage
        self.tokens_in = getattr(usage, "prompt_tokens", None)
        self.tokens_out = getattr(usage, "completion_tokens", None)

    def note_answer(self, response: Any) -> None:
        """A whole answer: its usage and text."""
        self.note_usage(getattr(response, "usage", None))
        for choice in getattr(response, "choices", None) or []:
            message = getattr(choice, "message", None)
            text = message.text() if message is not None else getattr(choice, "text", None)
            if text:
                self.response_parts.append(text)

    def note_chunk(self, chunk: Any) -> None:
        """A streamed chunk: its text delta, and the usage on the last one."""
        self.note_usage(getattr(chunk, "usage", None))
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            text = getattr(delta, "content", None) if delta is not None else None
            text = text if text is not None else getattr(choice, "text", None)
            if text and getattr(choice, "index", 0) == 0:
                self.response_parts.append(text)

    def record(self) -> AuditRecord:
        """The audit record (content raw; the writer applies the configured content modes)."""
        return AuditRecord(
            ts=self.arrived,
            request_id=self.request_id,
            principal=AuditPrincipal.of(self.principal) if self.principal else None,
            client_address=self.client_address,
            route=self.path,
            model_requested=self.model,
            route_taken=self.route.header() if self.route else None,
            cache_phase=self.cache_phase,
            similarity=self.similarity,
            decisions=self.decisions,
            topics=self.topics,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost_usd,
            cost_avoided_usd=self.cost_avoided_usd,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            status=self.status,
            error_code=self.error_code,
            prompt=self.prompt,
            response="".join(self.response_parts) if self.response_parts else None,
        )


def prompt_text(body: Any) -> str | None:
    """The text a request sends: chat messages (role-prefixed), a prompt, or embedding input."""
    messages = getattr(body, "messages", None)
    if messages is not None:
        system = getattr(body, "system", None)  # Anthropic keeps it beside the messages
        lines = [f"system: {_text(system)}"] if system else []
        lines += [f"{getattr(m, 'role', '?')}: {_text(m)}" for m in messages]
        return "\n".join(lines)
    for name in ("prompt", "input"):
        value = getattr(body, name, None)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n".join(value)
    return None


def _text(item: Any) -> str:
    """Text of a message, or of content given as a string or a list of blocks/parts."""
    if hasattr(item, "text") and callable(item.text):
        return str(item.text())
    content = getattr(item, "content", item)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(getattr(part, "text", None) or "" for part in content)
    return ""
