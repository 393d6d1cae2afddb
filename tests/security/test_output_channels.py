"""Finding 4: the output policy reads every text an answer carries, in every choice, whole and
streamed. The caller is a reviewer (watchful profile: e-mails redacted, SSNs and secrets
withheld). The simulator echoes the prompt into n choices and into tool-call arguments; the
scripted upstream plays a model that puts values where the simulator never would."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.security.conftest import Target
from tests.security.scripted import delta, message, reply, stream

EMAIL = "ana@example.org"
SSN = "123-45-6789"
SECRET = "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7s"


def _reviewer(target: Target) -> str:
    return target.issue("reviewers").secret


def _post(target: Target, key: str, body: dict[str, Any]) -> httpx.Response:
    """A chat request as raw HTTP; a stream's events are read whole."""
    messages = body.pop("messages", [{"role": "user", "content": "hi"}])
    return httpx.post(
        f"{target.v1}/chat/completions",
        json={"messages": messages, **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )


def _tool_whose_arguments_hold(value: str) -> dict[str, Any]:
    """A tool whose schema makes the simulator's call carry `value` as an argument."""
    schema = {"type": "object", "properties": {"to": {"type": "string", "enum": [value]}}}
    return {"type": "function", "function": {"name": "send", "parameters": schema}}


def test_every_choice_of_a_whole_answer_is_redacted(target: Target) -> None:
    reply_ = target.openai(_reviewer(target)).chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": f"echo {EMAIL}"}], n=3
    )
    assert len(reply_.choices) == 3
    for choice in reply_.choices:
        assert EMAIL not in (choice.message.content or "")
        assert "[EMAIL_1]" in (choice.message.content or "")


def test_every_choice_of_a_stream_is_redacted(target: Target) -> None:
    chunks = target.openai(_reviewer(target)).chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": f"echo {EMAIL}"}], n=2, stream=True
    )
    texts: dict[int, str] = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert all(EMAIL not in text and "[EMAIL_1]" in text for text in texts.values()), texts


def test_a_forbidden_value_in_a_later_choice_stops_the_stream(target: Target) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as stopped:
        for chunk in target.openai(_reviewer(target)).chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": f"ssn {SSN}"}],
            n=2,
            stream=True,
        ):
            received += [c.delta.content or "" for c in chunk.choices]
    assert "policy" in stopped.value.message
    assert SSN not in "".join(received)


def test_tool_call_arguments_are_redacted_whole_and_streamed(target: Target) -> None:
    client = target.openai(_reviewer(target))
    tools = [_tool_whose_arguments_hold(EMAIL)]
    whole = client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "mail her"}],
        tools=tools,  # type: ignore[list-item]
    )
    (call,) = whole.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"to": "[EMAIL_1]"}  # type: ignore[union-attr]
    streamed = ""
    for chunk in client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "mail her"}],
        tools=tools,  # type: ignore[list-item]
        stream=True,
    ):
        for choice in chunk.choices:
            streamed += "".join(c.function.arguments or "" for c in choice.delta.tool_calls or [])  # type: ignore[union-attr]
    assert json.loads(streamed) == {"to": "[EMAIL_1]"}


def test_a_forbidden_value_in_tool_call_arguments_withholds_the_answer(target: Target) -> None:
    with pytest.raises(openai.PermissionDeniedError) as withheld:
        target.openai(_reviewer(target)).chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": "file it"}],
            tools=[_tool_whose_arguments_hold(SSN)],  # type: ignore[list-item]
        )
    assert "withheld" in withheld.value.message


def test_the_anthropic_route_redacts_text_and_tool_use_input(target: Target) -> None:
    client = target.anthropic(_reviewer(target))
    text = client.messages.create(
        model="sim-small", max_tokens=100, messages=[{"role": "user", "content": f"echo {EMAIL}"}]
    )
    assert "[EMAIL_1]" in text.content[0].text and EMAIL not in text.model_dump_json()  # type: ignore[union-attr]
    tool = client.messages.create(
        model="sim-small",
        max_tokens=100,
        tools=[
            {
                "name": "send",
                "input_schema": {
                    "type": "object",
                    "properties": {"to": {"type": "string", "enum": [EMAIL]}},
                },
            }
        ],
        messages=[{"role": "user", "content": "mail her"}],
    )
    (use,) = [block for block in tool.content if block.type == "tool_use"]
    assert use.input == {"to": "[EMAIL_1]"}


def test_a_refusal_and_reasoning_content_are_redacted_in_a_whole_answer(target: Target) -> None:
    target.scripted.script(
        reply(
            message(refusal=f"I will not write to {EMAIL}"),
            message(content="fine", reasoning_content=f"the user {EMAIL} wants mail"),
        )
    )
    response = _post(target, _reviewer(target), {"model": "hostile", "n": 2})
    assert response.status_code == 200, response.text
    first, second = (c["message"] for c in response.json()["choices"])
    assert first["refusal"] == "I will not write to [EMAIL_1]"
    assert second["reasoning_content"] == "the user [EMAIL_1] wants mail"
    assert EMAIL not in response.text


def test_the_anthropic_route_redacts_a_refusal_whole_and_streamed(target: Target) -> None:
    """A refusal reaches an Anthropic client as a text block: redacted on the way."""
    head, tail = EMAIL[:6], EMAIL[6:]
    target.scripted.script(
        reply(message(refusal=f"I will not write to {EMAIL}")),
        stream(
            delta(0, role="assistant", refusal=f"I will not write to {head}"),
            delta(0, refusal=tail),
            delta(0, "stop"),
        ),
    )
    client = target.anthropic(_reviewer(target))
    whole = client.messages.create(
        model="hostile", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert whole.model_dump_json().count("[EMAIL_1]") == 1 and EMAIL not in whole.model_dump_json()
    with client.messages.stream(
        model="hostile", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as streamed:
        text = "".join(streamed.text_stream)
    assert text == "I will not write to [EMAIL_1]"


def test_a_forbidden_value_in_reasoning_content_withholds_the_answer(target: Target) -> None:
    target.scripted.script(reply(message(content="done", reasoning_content=f"ssn is {SSN}")))
    response = _post(target, _reviewer(target), {"model": "hostile"})
    assert response.status_code == 403, response.text
    assert SSN not in response.text


def test_a_value_split_across_chunks_choices_and_channels_is_redacted(target: Target) -> None:
    """Choice 0's content, choice 1's refusal and reasoning, and choice 1's tool call each
    carry the e-mail in two halves, their chunks interleaved."""
    head, tail = EMAIL[:6], EMAIL[6:]
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "send"}}
    target.scripted.script(
        stream(
            delta(0, role="assistant", content=f"write to {head}"),
            delta(1, role="assistant", refusal=f"no {head}"),
            delta(1, reasoning_content=f"user {head}"),
            delta(1, tool_calls=[{**call, "function": {"name": "send", "arguments": '{"to": "'}}]),
            delta(0, content=f"{tail} now"),
            delta(1, refusal=f"{tail} sorry"),
            delta(1, tool_calls=[{"index": 0, "function": {"arguments": head}}]),
            delta(1, reasoning_content=f"{tail} thinks"),
            delta(1, tool_calls=[{"index": 0, "function": {"arguments": tail + '"}'}}]),
            delta(0, "stop"),
            delta(1, "tool_calls"),
        )
    )
    response = _post(target, _reviewer(target), {"model": "hostile", "n": 2, "stream": True})
    assert response.status_code == 200
    assert EMAIL not in response.text and head not in response.text
    assert response.text.count("[EMAIL_1]") == 4


def test_a_secret_split_across_chunks_stops_the_stream_before_any_of_it(target: Target) -> None:
    target.scripted.script(
        stream(
            delta(0, role="assistant", content="the key is "),
            delta(1, role="assistant", content="nothing here"),
            delta(0, content=SECRET[:14]),
            delta(1, content=" at all"),
            delta(0, content=SECRET[14:] + " enjoy"),
            delta(0, "stop"),
            delta(1, "stop"),
        )
    )
    response = _post(target, _reviewer(target), {"model": "hostile", "n": 2, "stream": True})
    assert '"error"' in response.text and "policy" in response.text
    assert SECRET[:14] not in response.text


def test_a_cached_answer_passes_the_output_policy_of_whoever_it_is_served_to(
    target: Target,
) -> None:
    """A colleague without output rules fills the shared cache with an answer holding an
    e-mail; a reviewer served that entry gets it redacted."""
    prompt = f"echo {EMAIL} ({uuid.uuid4().hex[:8]})"
    body = {"model": "cached-small", "messages": [{"role": "user", "content": prompt}]}
    filled = _post(target, target.issue().secret, dict(body))
    assert EMAIL in filled.json()["choices"][0]["message"]["content"]
    served = _post(target, _reviewer(target), dict(body))
    assert served.headers["x-raygate-cache"] == "exact"
    assert EMAIL not in served.text and "[EMAIL_1]" in served.text


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            message(
                content="ok", audio={"id": "a1", "data": "UklGRg==", "transcript": f"ssn {SSN}"}
            ),
            id="audio-transcript",
        ),
        pytest.param(message(content="ok", reasoning=f"ssn {SSN}"), id="reasoning-field"),
    ],
)
def test_a_forbidden_value_in_any_text_of_the_answer_withholds_it(
    target: Target, answer: dict[str, Any]
) -> None:
    target.scripted.script(reply(answer))
    body = {"model": "hostile", "modalities": ["text", "audio"], "audio": {"voice": "alloy"}}
    response = _post(target, _reviewer(target), body)
    assert SSN not in response.text
    assert response.status_code == 403


def test_invisible_padding_inside_a_streamed_value_does_not_outrun_the_hold_back(
    target: Target,
) -> None:
    padding = [delta(0, content="\u200b" * 10) for _ in range(12)]
    target.scripted.script(
        stream(
            delta(0, role="assistant", content="write to ana@exa"),
            *padding,
            delta(0, content="mple.org today"),
            delta(0, "stop"),
        )
    )
    response = _post(target, _reviewer(target), {"model": "hostile", "stream": True})
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in response.text.splitlines()
        if line.startswith("data: {") and json.loads(line[6:]).get("choices")
    )
    assert EMAIL not in text.replace("\u200b", "")


def test_an_email_behind_a_json_escape_in_answer_tool_arguments_is_redacted(
    target: Target,
) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "send"}}
    call["function"]["arguments"] = '{"to": "ana\\u0040example.org"}'
    target.scripted.script(reply(message(tool_calls=[call])))
    response = _post(target, _reviewer(target), {"model": "hostile"})
    (sent,) = response.json()["choices"][0]["message"]["tool_calls"]
    assert json.loads(sent["function"]["arguments"]) == {"to": "[EMAIL_1]"}
