"""The output stage over every text an answer carries: each choice, refusals, reasoning
content and tool-call arguments, whole and streamed (a value split across chunks included),
with one placeholder per value across all of them."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from gateway.api.exchange import Exchange
from gateway.api.output_policy import OutputPolicy
from gateway.errors import PolicyViolation
from gateway.identity.access import Grant
from gateway.policy.config import PolicyConfig
from gateway.policy.engine import PolicyEngine
from gateway.protocol.openai import ChatCompletion, ChatCompletionChunk
from gateway.routing.failover import Route
from gateway.routing.routed import Routed, RoutedStream

EMAIL = "ana@example.org"


def policy() -> OutputPolicy:
    config = PolicyConfig.model_validate(
        {"profiles": {"default": {"output": {"EMAIL": "redact", "US_SSN": "block"}}}}
    )
    return OutputPolicy(PolicyEngine(config))


def exchange() -> Exchange:
    found = Exchange(request_id="req_1", path="/v1/chat/completions", client_address=None)
    found.grant = Grant(models=("*",), policy=None, groups=())
    return found


def answer(**message: Any) -> Routed[ChatCompletion]:
    return Routed(
        ChatCompletion.model_validate(
            {
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", **message}},
                    {"index": 1, "message": {"role": "assistant", "content": f"mail {EMAIL}"}},
                ],
            }
        ),
        Route("sim/m"),
    )


async def stream_of(chunks: list[dict[str, Any]]) -> AsyncGenerator[ChatCompletionChunk, None]:
    for chunk in chunks:
        yield ChatCompletionChunk.model_validate({"id": "c", "model": "m", **chunk})


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": fields}]}


async def collected(chunks: list[dict[str, Any]]) -> list[ChatCompletionChunk]:
    answer = await policy().chat(exchange(), RoutedStream(Route("sim/m"), stream_of(chunks)))
    assert isinstance(answer, RoutedStream)
    return [chunk async for chunk in answer.chunks]


def text_of(chunks: list[ChatCompletionChunk], index: int, field: str) -> str:
    out = []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.index != index:
                continue
            if field == "arguments":
                out += [c.function.arguments or "" for c in choice.delta.tool_calls or []]
            elif field == "reasoning_content":
                out.append(str((choice.delta.model_extra or {}).get(field) or ""))
            else:
                out.append(getattr(choice.delta, field) or "")
    return "".join(out)


@pytest.mark.asyncio
async def test_every_text_of_a_whole_answer_is_redacted_in_every_choice() -> None:
    routed = await policy().chat(
        exchange(),
        answer(
            content=f"write to {EMAIL}",
            refusal=f"I will not mail {EMAIL}",
            reasoning_content=f"the user is {EMAIL}",
            tool_calls=[
                {"id": "t", "function": {"name": "send", "arguments": f'{{"to": "{EMAIL}"}}'}}
            ],
        ),
    )
    assert isinstance(routed, Routed)
    first, second = routed.response.choices
    dumped = routed.response.model_dump_json()
    assert EMAIL not in dumped
    assert first.message.content == "write to [EMAIL_1]"
    assert first.message.refusal == "I will not mail [EMAIL_1]"
    assert first.message.tool_calls[0].function.arguments == '{"to": "[EMAIL_1]"}'  # type: ignore[index]
    assert (first.message.model_extra or {})["reasoning_content"] == "the user is [EMAIL_1]"
    assert second.message.content == "mail [EMAIL_1]"  # one value, one placeholder


@pytest.mark.asyncio
async def test_a_blocked_value_in_tool_arguments_withholds_the_answer() -> None:
    with pytest.raises(PolicyViolation, match="withheld"):
        await policy().chat(
            exchange(),
            answer(tool_calls=[{"id": "t", "function": {"name": "f", "arguments": "123-45-6789"}}]),
        )


@pytest.mark.asyncio
async def test_a_stream_is_redacted_in_every_choice_and_channel_across_chunks() -> None:
    half, rest = EMAIL[:5], EMAIL[5:]
    chunks = await collected(
        [
            delta(0, role="assistant", content=""),
            delta(1, role="assistant", content=""),
            delta(0, content=f"mail {half}"),
            delta(1, content=f"second {half}"),
            delta(0, content=f"{rest} now"),
            delta(1, content=f"{rest} too"),
            delta(
                0,
                tool_calls=[
                    {
                        "index": 0,
                        "id": "t",
                        "function": {"name": "send", "arguments": '{"to": "' + half},
                    }
                ],
            ),
            delta(0, tool_calls=[{"index": 0, "function": {"arguments": rest + '"}'}}]),
            delta(1, refusal=f"no {EMAIL}"),
            delta(0, reasoning_content=f"for {EMAIL}"),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]},
        ]
    )
    assert all(EMAIL not in chunk.model_dump_json() for chunk in chunks)
    assert text_of(chunks, 0, "content") == "mail [EMAIL_1] now"
    assert text_of(chunks, 1, "content") == "second [EMAIL_1] too"
    assert text_of(chunks, 0, "arguments") == '{"to": "[EMAIL_1]"}'
    assert text_of(chunks, 1, "refusal") == "no [EMAIL_1]"
    assert text_of(chunks, 0, "reasoning_content") == "for [EMAIL_1]"


@pytest.mark.asyncio
async def test_a_blocked_value_in_a_second_choice_ends_the_stream() -> None:
    with pytest.raises(PolicyViolation):
        await collected(
            [
                delta(0, content="fine"),
                delta(1, content="ssn 123-45-6789 here"),
                {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]},
            ]
        )
