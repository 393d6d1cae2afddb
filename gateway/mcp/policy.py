"""The caller's policy profile over a tool call, as chat applies it to messages: the input
rules over the arguments before the upstream sees them, the output rules over the result
before the caller sees it.

Every string in the arguments (at any depth) is one text of the request: a `block` refuses the
call, a `redact` replaces the values with typed placeholders (one numbering across all of
them); then the embedding-based rules (topics, the similarity and learned jailbreak signals)
over the arguments' text as one request text, exactly as chat runs them over a message
(`InputPolicy.judge`). The result's texts are scored for indirect prompt injection as chat
scores role=tool messages (`InputPolicy.tool_results`: patterns, and the learned classifier
on their embeddings where the profile has it). Every text of the result (text content,
embedded text resources, strings in the structured content) is one channel of the answer:
redacted, or the whole result withheld. Decisions land on the exchange, so on the call's
audit record. A block is an MCP error (`ToolRefused`, outcome `blocked`), never a 403.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types

from gateway.errors import PolicyViolation, ServiceUnavailable
from gateway.mcp.errors import ToolRefused
from gateway.policy.engine import PolicyEngine
from gateway.policy.output import OutputBlocked, OutputFilter

if TYPE_CHECKING:
    from gateway.api.exchange import Exchange
    from gateway.api.input_policy import InputPolicy


def engine_for(policy: InputPolicy | None, exchange: Exchange) -> PolicyEngine | None:
    """The engine that applies to this caller (None: no policy, or no grant to apply it to)."""
    if policy is None or exchange.grant is None:
        return None
    return policy.engine


async def screen_arguments(
    policy: InputPolicy | None, exchange: Exchange, arguments: dict[str, Any]
) -> dict[str, Any]:
    """The arguments as they may be sent upstream: unchanged, or redacted; ToolRefused when
    the profile blocks them."""
    engine = engine_for(policy, exchange)
    if policy is None or engine is None:
        return arguments
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    _map_strings(arguments, collect)
    if not texts:
        return arguments
    try:
        verdict = await policy.check(engine, exchange, texts, None)
        if engine.needs_embedding(verdict.profile):
            query = "\n".join(t for t in verdict.texts if t.strip())
            await policy.judge(engine, exchange, verdict, [query] if query else [], needed=True)
    except PolicyViolation:
        raise ToolRefused.blocked(
            f"The tool call was blocked by policy ({_blocking(exchange)}).", "blocked"
        ) from None
    except ServiceUnavailable as unavailable:  # the profile fails closed
        raise ToolRefused.blocked(unavailable.message, "blocked") from None
    if verdict.action != "redact":
        return arguments
    redacted = iter(verdict.texts)
    result: dict[str, Any] = _map_strings(arguments, lambda _: next(redacted))
    return result


async def screen_result(
    policy: InputPolicy | None, exchange: Exchange, result: types.CallToolResult
) -> types.CallToolResult:
    """The result as the caller may receive it; ToolRefused when the output rules withhold
    it."""
    engine = engine_for(policy, exchange)
    if policy is None or engine is None:
        return result
    texts = [b.text for b in result.content if isinstance(b, types.TextContent) and b.text]
    try:
        await policy.tool_results(engine, exchange, texts)
    except PolicyViolation:
        raise ToolRefused.blocked(
            f"The tool result was withheld by policy ({_blocking(exchange)}).", "blocked"
        ) from None
    rules = engine.output_filter(exchange.policy_profile, exchange.redacted)
    if rules is None:
        return result
    return await asyncio.to_thread(_filtered_result, result, rules, exchange)


async def screen_resource(
    policy: InputPolicy | None, exchange: Exchange, result: types.ReadResourceResult
) -> types.ReadResourceResult:
    """A read resource's texts through the output rules, as a tool result's."""
    engine = engine_for(policy, exchange)
    if engine is None:
        return result
    rules = engine.output_filter(exchange.policy_profile, exchange.redacted)
    if rules is None:
        return result
    return await asyncio.to_thread(_filtered_resource, result, rules, exchange)


def _filtered_resource(
    result: types.ReadResourceResult, rules: OutputFilter, exchange: Exchange
) -> types.ReadResourceResult:
    whole = _whole(rules, exchange, "resource")
    contents = [
        c.model_copy(update={"text": whole(c.text)})
        if isinstance(c, types.TextResourceContents)
        else c
        for c in result.contents
    ]
    exchange.decisions += rules.decisions
    return result.model_copy(update={"contents": contents})


def _whole(rules: OutputFilter, exchange: Exchange, what: str) -> Callable[[str], str]:
    """One whole text through its own channel of `rules`; ToolRefused when it is blocked."""

    def whole(text: str) -> str:
        channel = rules.channel()
        try:
            return channel.feed(text) + channel.finish()
        except OutputBlocked as blocked:
            exchange.decisions += blocked.decisions
            raise ToolRefused.blocked(
                f"The {what} was withheld by policy ({blocked}).", "blocked"
            ) from None

    return whole


def _filtered_result(
    result: types.CallToolResult, rules: OutputFilter, exchange: Exchange
) -> types.CallToolResult:
    whole = _whole(rules, exchange, "tool result")
    content = [_filtered_block(block, whole) for block in result.content]
    update: dict[str, Any] = {"content": content}
    if result.structured_content is not None:
        update["structured_content"] = _map_strings(result.structured_content, whole)
    exchange.decisions += rules.decisions
    return result.model_copy(update=update)


def _filtered_block(block: types.ContentBlock, whole: Callable[[str], str]) -> types.ContentBlock:
    if isinstance(block, types.TextContent):
        return block.model_copy(update={"text": whole(block.text)})
    if isinstance(block, types.EmbeddedResource) and isinstance(
        block.resource, types.TextResourceContents
    ):
        resource = block.resource.model_copy(update={"text": whole(block.resource.text)})
        return block.model_copy(update={"resource": resource})
    return block  # images, audio, links and blobs carry no text the detectors read


def _blocking(exchange: Exchange) -> str:
    """The rules that blocked the call, as a refusal names them."""
    return ", ".join(d.rule for d in exchange.decisions if d.action == "block")


def _map_strings(value: Any, change: Callable[[str], Any]) -> Any:
    """`value` with every string in it (dict values and list items, at any depth, in order)
    replaced by `change(string)`."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value


def result_text(result: types.CallToolResult) -> str:
    """The text of a result as the audit trail keeps it: its text blocks, joined."""
    parts = [b.text for b in result.content if isinstance(b, types.TextContent)]
    return "\n".join(parts)
