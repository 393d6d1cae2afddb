"""The caller's policy profile over A2A calls: the text parts of the message sent to an agent,
and the text parts of everything that comes back.

Input: the detectors and the pattern jailbreak score over the message's text parts (a
`block` refuses the call, nothing is sent; a `redact` replaces values with typed placeholders
before the agent sees them), then the embedding-based rules (topics, similarity) on the
message's text where the profile has any, exactly as on the model routes (`InputPolicy`).

Output: the profile's output rules over every text part of a result or streamed event (a
message, a task's status message and history, an artifact); placeholders number across the
whole call, and redacted values come back where the profile restores them. Each text part is
checked whole: a value that an agent splits across two streamed artifact chunks is seen in
halves (the model routes hold text back across chunks; A2A events are not held back).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.api.exchange import Exchange
from gateway.api.input_policy import InputPolicy
from gateway.errors import PolicyViolation
from gateway.policy.engine import PolicyEngine
from gateway.policy.output import OutputBlocked, OutputFilter
from gateway.protocol.a2a import RpcRequest, text_parts, with_texts


class A2APolicy:
    """Applies each caller's profile to their A2A calls (nothing without an engine)."""

    def __init__(self, engine: PolicyEngine | None, input_policy: InputPolicy) -> None:
        self._engine = engine
        self._input = input_policy  # its request embedding and semantic checks, shared

    async def message(self, exchange: Exchange, request: RpcRequest, model: str) -> RpcRequest:
        """The request with its message checked: refused (PolicyViolation, 403), redacted, or
        as it was. Notes the message text (as sent on) on the exchange."""
        message = request.message()
        texts = [p["text"] for p in text_parts(message)]
        exchange.prompt = "\n".join(texts) if texts else None
        engine = self._engine if exchange.grant is not None else None
        if engine is None or not texts:
            return request
        verdict = await self._input.check(engine, exchange, texts, model)  # a block: 403
        if verdict.texts != texts:
            redacted = verdict.texts
            message = with_texts(message, lambda _: redacted)
            exchange.prompt = "\n".join(redacted)
        if engine.needs_embedding(verdict.profile):
            query = "\n".join(t for t in verdict.texts if t.strip())
            await self._input.judge(
                engine, exchange, verdict, [query] if query else [], needed=True
            )
        if message is request.message():
            return request
        return RpcRequest(
            request.id, request.method, request.kind, {**request.params, "message": message}
        )

    def answer_filter(self, exchange: Exchange) -> OutputFilter | None:
        """The output rules for one call's answers (None: nothing to do)."""
        if self._engine is None or exchange.grant is None:
            return None
        return self._engine.output_filter(exchange.policy_profile, exchange.redacted)

    async def answer(self, exchange: Exchange, rules: OutputFilter | None, result: Any) -> Any:
        """A result (or a streamed event's result) through the output rules: redacted, or
        withheld (PolicyViolation); its texts, as sent on, noted on the exchange."""
        if rules is not None:
            result = await asyncio.to_thread(_filtered, result, rules, exchange)
        exchange.response_parts += [p["text"] for p in text_parts(result) if p["text"]]
        return result


def _filtered(result: Any, rules: OutputFilter, exchange: Exchange) -> Any:
    def each(texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            channel = rules.channel()
            out.append(channel.feed(text) + channel.finish())
        return out

    try:
        return with_texts(result, each)
    except OutputBlocked as blocked:
        exchange.decisions += blocked.decisions
        raise PolicyViolation(f"The agent's answer was withheld by policy ({blocked}).") from None
    finally:
        exchange.decisions += [d for d in rules.decisions if d.action != "block"]
        rules.decisions.clear()
