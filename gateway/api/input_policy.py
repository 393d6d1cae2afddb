"""The input policy stage: the caller's profile over a request before anything goes upstream.

For chat (Anthropic messages once translated), legacy completions and embeddings alike, in
this order:

1. limits: the profile's model allow-list (403) and max_tokens ceiling (clamp, or 400);
2. detectors and the pattern jailbreak score, off the event loop: a `block` is a 403 and
   nothing goes upstream; a `redact` replaces values with typed placeholders;
3. embedding-based rules (topics, the similarity jailbreak signal) on the request embedding
   of the redacted text (`RequestEmbedding`, shared with the cache); the engine's own phrases
   are embedded through the same embedder. Without one they do not run: recorded as such,
   and refused (503) where the profile fails closed.

Every decision and detected topic lands on the request's exchange (and so in its audit
record), with the prompt as it was sent on: redacted where the policy redacted it, and with
every detected value replaced where the policy blocked it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from gateway.api.embedding import RequestEmbedding
from gateway.api.exchange import Exchange, prompt_text
from gateway.api.request_texts import strings_of, text_slots, tool_results_of, with_texts
from gateway.audit.record import PolicyDecision
from gateway.cache.keys import split_last_user_turn
from gateway.errors import InvalidRequest, PermissionDenied, PolicyViolation, ServiceUnavailable
from gateway.policy.engine import UNAVAILABLE_RULE, PolicyEngine, Verdict
from gateway.policy.limits import LimitCheck
from gateway.policy.redaction import placeholders_as_words, redact_pii
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)

log = logging.getLogger(__name__)

PREPARE_TIMEOUT_S = 30.0  # embedding the engine's phrases, once (again after a reload)


class InputPolicy:
    """Runs the caller's policy profile over each request's text."""

    def __init__(self, engine: PolicyEngine | None, embedding: RequestEmbedding) -> None:
        self.engine = engine
        self.embedding = embedding

    async def chat(self, exchange: Exchange, body: ChatCompletionRequest) -> ChatCompletionRequest:
        """The chat request refused (403/400, nothing sent upstream), redacted (typed
        placeholders), clamped, or as it was."""
        engine = self._engine_for(exchange)
        if engine is None:
            return body
        requested = body.max_completion_tokens or body.max_tokens
        limits = self._limits(engine, exchange, body.model, requested)
        slots = text_slots(body)
        verdict = await self.check(engine, exchange, [t for _, t in slots], body.model)
        if verdict.action == "redact":
            body = with_texts(body, [slot for slot, _ in slots], verdict.texts)
            exchange.prompt = prompt_text(body)  # the audit keeps what was sent on
        await self.tool_results(engine, exchange, tool_results_of(body))
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        _, query = split_last_user_turn(messages)
        # Only when a rule of the profile is embedding-based: a keyed cache hit needs none.
        needed = engine.needs_embedding(verdict.profile)
        await self.judge(engine, exchange, verdict, [query] if query else [], needed=needed)
        if limits.max_tokens is not None:
            field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
            body = body.model_copy(update={field: limits.max_tokens})
        return body

    async def completion(self, exchange: Exchange, body: CompletionRequest) -> CompletionRequest:
        """A legacy completion's prompt (a string or a list of them), checked and redacted like
        a chat message; token-id prompts cannot be read, so a profile that redacts or blocks
        anything refuses them (400)."""
        engine = self._engine_for(exchange)
        if engine is None:
            return body
        limits = self._limits(engine, exchange, body.model, body.max_tokens)
        texts = strings_of(body.prompt)
        if texts is None:
            _unreadable(engine, exchange, "prompt")
            texts = []
        suffix = [body.suffix] if body.suffix else []
        verdict = await self.check(engine, exchange, texts + suffix, body.model)
        if verdict.action == "redact":
            prompts = verdict.texts[: len(texts)]
            prompt = prompts[0] if isinstance(body.prompt, str) else prompts
            update: dict[str, Any] = {"prompt": prompt}
            if suffix:
                update["suffix"] = verdict.texts[-1]
            body = body.model_copy(update=update)
            exchange.prompt = prompt_text(body)
        query = [t for t in verdict.texts[: len(texts)] if t.strip()]
        needed = engine.needs_embedding(verdict.profile)
        await self.judge(engine, exchange, verdict, query, needed=needed)
        if limits.max_tokens is not None:
            body = body.model_copy(update={"max_tokens": limits.max_tokens})
        return body

    async def embeddings(self, exchange: Exchange, body: EmbeddingRequest) -> EmbeddingRequest:
        """Every input text checked and redacted like a chat message (so what is indexed
        upstream holds placeholders, not values)."""
        engine = self._engine_for(exchange)
        if engine is None:
            return body
        self._limits(engine, exchange, body.model, None, generates=False)
        texts = strings_of(body.input)
        if texts is None:
            _unreadable(engine, exchange, "input")
            texts = []
        verdict = await self.check(engine, exchange, texts, body.model)
        if verdict.action == "redact":
            new_input = verdict.texts[0] if isinstance(body.input, str) else verdict.texts
            body = body.model_copy(update={"input": new_input})
            exchange.prompt = prompt_text(body)
        # Embedding a whole batch of documents twice is costly: only when a rule needs it.
        needed = bool(texts) and engine.needs_embedding(verdict.profile)
        query = verdict.texts if needed else []
        await self.judge(engine, exchange, verdict, query, needed=needed)
        return body

    async def tool_results(
        self, engine: PolicyEngine, exchange: Exchange, texts: list[str]
    ) -> None:
        """Indirect prompt injection in tool results (chat's role=tool messages, MCP tool
        results): each scored on its own (with its embedding where the profile's classifier
        blocks); a block is a PolicyViolation (403)."""
        if not texts:
            return
        texts = [placeholders_as_words(t) for t in texts]  # redacted: as the rules read it
        rows = None
        profile = exchange.policy_profile
        if engine.injection_needs_embeddings(profile) and self.embedding.embed is not None:
            try:
                rows = await self.embedding.embed(texts)
            except Exception as exc:  # scored on the patterns alone, and logged
                log.warning("tool results could not be embedded: %r", exc)
        verdict = await asyncio.to_thread(engine.check_injection, texts, profile, embeddings=rows)
        exchange.decisions += verdict.decisions
        if verdict.action == "block":
            rules = ", ".join(verdict.blocking_rules)
            raise PolicyViolation(f"A tool result was blocked by policy ({rules}).")

    def _engine_for(self, exchange: Exchange) -> PolicyEngine | None:
        return self.engine if exchange.grant is not None else None

    @staticmethod
    def _limits(
        engine: PolicyEngine,
        exchange: Exchange,
        model: str,
        max_tokens: int | None,
        *,
        generates: bool = True,
    ) -> LimitCheck:
        check = engine.admit(exchange.policy_profile, model, max_tokens, generates=generates)
        exchange.decisions += check.decisions
        if check.refused == "model":
            raise PermissionDenied(
                f"The model {model!r} is not allowed by your policy profile (rule: models).",
                param="model",
                code="model_not_allowed",
            )
        if check.refused == "max_tokens":
            raise InvalidRequest(
                f"max_tokens {max_tokens} is over your policy profile's ceiling of "
                f"{check.ceiling} for {model!r} (rule: max_tokens).",
                param="max_tokens",
                code="max_tokens_exceeded",
            )
        return check

    @staticmethod
    async def check(
        engine: PolicyEngine, exchange: Exchange, texts: list[str], model: str | None
    ) -> Verdict:
        """Detectors and patterns, off the event loop unless they are light; a block ends the
        request here. `model` selects the profile's per-model overrides (None: the
        profile's own rules)."""
        profile = exchange.policy_profile
        if engine.is_light(texts, profile, model):
            verdict = engine.check(texts, profile, model=model)
        else:
            verdict = await asyncio.to_thread(engine.check, texts, profile, model=model)
        exchange.decisions += verdict.decisions
        exchange.redacted = verdict.mapping
        if verdict.action == "block":
            # Nothing was sent on; the audit keeps what was asked with its values replaced.
            exchange.prompt = redact_pii(exchange.prompt) if exchange.prompt else None
            rules = ", ".join(verdict.blocking_rules)
            raise PolicyViolation(f"The request was blocked by policy ({rules}).")
        return verdict

    async def judge(
        self,
        engine: PolicyEngine,
        exchange: Exchange,
        verdict: Verdict,
        texts: list[str],
        *,
        needed: bool,
    ) -> None:
        """The embedding-based rules (topics, similarity, the classifier) over `texts`,
        embedded once as one request text; nothing is embedded when `needed` is False.
        Placeholders of redacted values are read as their type's words (see
        `placeholders_as_words`; the embedder reads them so too)."""
        embedding, unavailable = await self._request_embedding(exchange, texts, needed=needed)
        spoken = "\n".join(placeholders_as_words(t) for t in texts)
        self._judge(engine, exchange, verdict, embedding, spoken, unavailable)

    async def _request_embedding(
        self, exchange: Exchange, texts: list[str], *, needed: bool
    ) -> tuple[np.ndarray | None, str | None]:
        """The request embedding of `texts`, with why there is none; the engine's phrases
        prepared first."""
        if not texts or not needed:
            return None, "no text to embed" if not texts else "not needed"
        embed = self.embedding.embed
        if embed is None:
            return None, "no embedder configured"
        assert self.engine is not None
        try:
            await asyncio.wait_for(self.engine.prepare(embed), PREPARE_TIMEOUT_S)
        except Exception as exc:  # the embedder is a remote, optional stage: degrade
            log.warning("policy phrases could not be embedded: %r", exc)
            return None, f"policy phrases could not be embedded ({type(exc).__name__})"
        if len(texts) == 1:
            embedding = await self.embedding.of(exchange, texts[0])
            return embedding, None if embedding is not None else "the embedder failed"
        try:
            return await embed(texts), None
        except Exception as exc:  # as above: degrade to "not run", never a 500
            log.warning("request embedding failed: %r", exc)
            return None, f"the embedder failed ({type(exc).__name__})"

    @staticmethod
    def _judge(
        engine: PolicyEngine,
        exchange: Exchange,
        verdict: Verdict,
        embedding: np.ndarray | None,
        text: str,
        unavailable: str | None,
    ) -> None:
        """Topics and similarity, and what they mean for the request."""
        if embedding is None and not engine.needs_embedding(verdict.profile):
            return  # nothing embedding-based to run, and no embedding to score topics with
        before = len(verdict.decisions)
        engine.judge(verdict, embedding, text=text, unavailable=unavailable)
        exchange.decisions += verdict.decisions[before:]
        exchange.topics = [t.topic for t in verdict.topics]
        if verdict.action != "block":
            return
        rules = verdict.blocking_rules
        if rules == [UNAVAILABLE_RULE]:
            raise ServiceUnavailable(
                "The request needs the policy's embedding-based checks, which are unavailable "
                f"({verdict.embedding_checks}); the profile fails closed.",
                code="policy_unavailable",
            )
        raise PolicyViolation(f"The request was blocked by policy ({', '.join(rules)}).")


def _unreadable(engine: PolicyEngine, exchange: Exchange, param: str) -> None:
    """Token ids instead of text: the detectors cannot read them. Recorded; refused where
    the profile redacts or blocks anything (outside a dry run)."""
    rules = engine.profile(exchange.policy_profile)
    strict = any(a in ("redact", "block") for a in rules.pii.values())
    strict = strict or rules.jailbreak.action == "block" or "block" in rules.topics.values()
    refuse = strict and not engine.config.dry_run_for(rules)
    exchange.decisions.append(
        PolicyDecision(
            rule="input.token_ids",
            detector="input",
            action="block" if refuse else "not_run",
            detail="token ids cannot be checked by the policy",
        )
    )
    if refuse:
        raise InvalidRequest(
            f"Send {param} as text: your policy profile checks input, and token ids cannot "
            "be checked (rule: input.token_ids).",
            param=param,
            code="policy_unreadable_input",
        )
