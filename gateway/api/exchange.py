"""One request as it passes the pipeline's stages, and what it leaves in the audit trail.

The middleware opens an `Exchange` for every request; each stage notes what it learned on it
(the caller, the model, the policy's decisions, the cache outcome, the route, the usage, the
answer's text). When the response is complete (at once for a JSON answer, at the end of a
stream, whether it completed, failed or was abandoned) it becomes one `AuditRecord`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np
from pydantic import BaseModel

from gateway.accounting.meter import Allowance
from gateway.audit.actions import admin_actor
from gateway.audit.record import AuditPrincipal, AuditRecord, CachePhase, PolicyDecision
from gateway.identity.access import Grant
from gateway.identity.admin import AdminPrincipal
from gateway.identity.principal import Principal
from gateway.protocol.anthropic import CountTokensRequest, MessagesRequest, TextBlock
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    Usage,
)
from gateway.protocol.responses import ResponsesRequest
from gateway.routing.context import RouteContext
from gateway.routing.routed import Routed, RoutedStream
from gateway.routing.router import Route

if TYPE_CHECKING:
    from starlette.requests import Request

# The answers and chunks the stages pass along, in the gateway's canonical (OpenAI) shapes.
Answer = ChatCompletion | Completion | EmbeddingResponse
Chunk = ChatCompletionChunk | Completion
_A = TypeVar("_A", bound=Answer)
_K = TypeVar("_K", bound=Chunk)


@dataclass
class Exchange:
    """The facts of one request, gathered stage by stage."""

    request_id: str
    path: str
    client_address: str | None
    headers: Mapping[str, str] = field(default_factory=dict)  # the request's HTTP headers
    arrived: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    grant: Grant | None = None  # what the caller may do, resolved once with the principal
    model: str | None = None
    prompt: str | None = None
    allowance: Allowance | None = None  # what the meter granted before the call
    route: Route | None = None
    tried: str | None = None  # when no target answered: the ones tried (`tried=a:503,...`)
    tokens_in: int | None = None
    tokens_out: int | None = None
    response_parts: list[str] = field(default_factory=list)
    status: int | None = None
    error_code: str | None = None
    usage: Usage | EmbeddingUsage | None = None  # the answer's usage, once known
    cost_usd: float | None = None
    decisions: list[PolicyDecision] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)  # detected by the policy's topic rules
    redacted: dict[str, str] = field(default_factory=dict)  # placeholder -> value, this request
    streaming: bool = False  # a stream writes its record when it ends, not with the headers
    cache_phase: CachePhase | None = None  # None: the cache did not apply
    similarity: float | None = None
    cache_replica: str | None = None  # the cache replica that looked the request up
    cost_avoided_usd: float | None = None  # what a cache hit saved, at the target's prices
    embedding: np.ndarray | None = None  # the request's embedding, computed once and shared
    embedded_text: str | None = None  # the text `embedding` is of
    admin: AdminPrincipal | None = None  # on an admin route: who, with their admin roles
    admin_action: str | None = None  # on an admin route: what it does, e.g. keys.revoke
    admin_target: str | None = None  # and to what, e.g. key:<id>
    template: str | None = None  # the matched route's path template (None: no route matched)
    first_chunk_ms: float | None = None  # a stream: arrival to its first text

    @property
    def policy_profile(self) -> str | None:
        """The caller's policy profile (None: the default one)."""
        return self.grant.policy if self.grant is not None else None

    @property
    def answered_from_cache(self) -> bool:
        """Whether a cache hit answered this request (nothing was spent upstream)."""
        return self.cache_phase in ("exact", "normalized", "semantic")

    def route_context(self) -> RouteContext:
        """What routing conditions may look at: the authenticated caller's identity."""
        return RouteContext.of(self.principal) if self.principal is not None else RouteContext()

    def elapsed_ms(self) -> float:
        """Time since the request arrived."""
        return (time.perf_counter() - self.started) * 1000

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far, the upstream's time excluded."""
        upstream_ms = self.route.upstream_ms if self.route is not None else 0.0
        return max(self.elapsed_ms() - upstream_ms, 0.0)

    def note_usage(self, usage: Usage | EmbeddingUsage | None) -> None:
        """Take the token counts of an answer's usage (None: none came)."""
        if usage is None:
            return
        self.usage = usage
        self.tokens_in = usage.prompt_tokens
        self.tokens_out = usage.completion_tokens if isinstance(usage, Usage) else None

    def note_answer(self, answer: Answer) -> None:
        """A whole answer: its usage and its text."""
        self.note_usage(answer.usage)
        if isinstance(answer, ChatCompletion):
            self.response_parts += [c.message.text() for c in answer.choices if c.message.text()]
        elif isinstance(answer, Completion):
            self.response_parts += [c.text for c in answer.choices if c.text]

    def note_chunk(self, chunk: Chunk) -> None:
        """A streamed chunk: the first choice's text, and the usage on the last chunk."""
        self.note_usage(chunk.usage)
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            text = choice.delta.content if isinstance(choice, ChunkChoice) else choice.text
            if text:
                if not self.response_parts:
                    self.first_chunk_ms = self.elapsed_ms()
                self.response_parts.append(text)

    @overload
    def observe(self, answer: Routed[_A]) -> Routed[_A]: ...

    @overload
    def observe(self, answer: RoutedStream[_K]) -> RoutedStream[_K]: ...

    def observe(self, answer: Routed[_A] | RoutedStream[_K]) -> Routed[_A] | RoutedStream[_K]:
        """Note an answer as the client receives it (after the output policy: the trail never
        keeps a value the policy took out). A stream is noted chunk by chunk."""
        if isinstance(answer, RoutedStream):
            return RoutedStream(answer.route, self._noting(answer.chunks))
        self.note_answer(answer.response)
        return answer

    async def _noting(self, chunks: AsyncGenerator[_K, None]) -> AsyncGenerator[_K, None]:
        async with aclosing(chunks):
            async for chunk in chunks:
                self.note_chunk(chunk)
                yield chunk

    def record(self, latency_ms: float | None = None) -> AuditRecord:
        """The audit record (content raw; the writer applies the configured content modes);
        `latency_ms` defaults to the time since arrival."""
        return AuditRecord(
            ts=self.arrived,
            request_id=self.request_id,
            principal=self._audited_principal(),
            client_address=self.client_address,
            route=self.path,
            model_requested=self.model,
            route_taken=self.route.header() if self.route else self.tried,
            cache_phase=self.cache_phase,
            similarity=self.similarity,
            decisions=self.decisions,
            topics=self.topics,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost_usd,
            cost_avoided_usd=self.cost_avoided_usd,
            latency_ms=round(self.elapsed_ms() if latency_ms is None else latency_ms, 3),
            status=self.status,
            error_code=self.error_code,
            prompt=self.prompt,
            response="".join(self.response_parts) if self.response_parts else None,
            admin_action=self.admin_action,
            admin_target=self.admin_target,
        )

    def _audited_principal(self) -> AuditPrincipal | None:
        if self.admin is not None:
            return admin_actor(self.admin.principal, self.admin.roles)
        return AuditPrincipal.of(self.principal) if self.principal is not None else None


def prompt_text(body: BaseModel) -> str | None:
    """The text a request sends: chat or Anthropic messages (role-prefixed, the system prompt
    first), a prompt, or embedding input (token ids have no text)."""
    if isinstance(body, ChatCompletionRequest):
        return "\n".join(f"{m.role}: {m.text()}" for m in body.messages)
    if isinstance(body, MessagesRequest | CountTokensRequest):
        lines = [f"system: {_blocks_text(body.system)}"] if body.system else []
        lines += [f"{m.role}: {_blocks_text(m.content)}" for m in body.messages]
        return "\n".join(lines)
    if isinstance(body, ResponsesRequest):
        lines = [f"system: {body.instructions}"] if body.instructions else []
        return "\n".join([*lines, *(item.prompt_line() for item in body.input_items())])
    if isinstance(body, CompletionRequest):
        return _strings(body.prompt)
    if isinstance(body, EmbeddingRequest):
        return _strings(body.input)
    return None


def _blocks_text(content: str | Sequence[object] | None) -> str:
    # Anthropic content: a string, or blocks of which only text blocks carry text.
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(block.text for block in content if isinstance(block, TextBlock))


def _strings(value: str | list[str] | list[int] | list[list[int]]) -> str | None:
    if isinstance(value, str):
        return value
    if all(isinstance(v, str) for v in value):
        return "\n".join(v for v in value if isinstance(v, str))
    return None


def route_path(request: Request) -> str:
    """The request's path within the app: the prefix it is mounted under (a Serve route
    prefix, ASGI's `root_path`) taken off, so that its routes read the same wherever the
    app is mounted."""
    path, root = request.url.path, request.scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path
