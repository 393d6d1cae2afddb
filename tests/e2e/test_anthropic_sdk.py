"""The official `anthropic` SDK against the gateway's `/v1/messages`, for any model."""

from __future__ import annotations

import anthropic
import pytest

from tests.e2e.conftest import Gateway


@pytest.fixture
def client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)


@pytest.mark.parametrize("model", ["sim-small", "sim-claude", "sim-gemini"])
def test_messages_answers_in_anthropic_shape_from_any_wire_format(
    client: anthropic.Anthropic, model: str
) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Name a French city"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == model
    assert message.content[0].type == "text"
    assert "Name a French city" in message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_messages_system_prompt_reaches_the_upstream_as_system(
    client: anthropic.Anthropic, gateway: Gateway
) -> None:
    client.messages.create(
        model="sim-small",
        max_tokens=50,
        system="You are terse.",
        messages=[{"role": "user", "content": "hi"}],
    )
    sent = gateway.upstream_requests()[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}  # type: ignore[index]


@pytest.mark.parametrize("model", ["sim-small", "sim-claude"])
def test_messages_stream_assembles_the_same_text(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "Stream a reply"}]
    ) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Stream a reply" in streamed_text
    assert final.content[0].text == streamed_text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert final.id.startswith("msg_")


def test_messages_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    tool = {
        "name": "lookup",
        "description": "Look a word up",
        "input_schema": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    }
    first = client.messages.create(
        model="sim-small",
        max_tokens=200,
        tools=[tool],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What does 'gateway' mean?"}],
    )
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "lookup" and "word" in use.input  # type: ignore[operator]
    second = client.messages.create(
        model="sim-small",
        max_tokens=200,
        tools=[tool],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "What does 'gateway' mean?"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "a way through"}
                ],
            },
        ],
    )
    assert "a way through" in second.content[0].text  # type: ignore[union-attr]


def test_messages_unknown_model_is_a_404_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(
            model="nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_messages_wrong_key_is_a_401(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model="sim-small", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )


def test_messages_stream_cut_upstream_ends_with_an_error_event(
    client: anthropic.Anthropic, gateway: Gateway
) -> None:
    gateway.inject(kind="cut", after_chunks=3, count=1)
    with pytest.raises(anthropic.APIStatusError):  # the SDK raises on the error event
        with client.messages.stream(
            model="sim-small", max_tokens=200, messages=[{"role": "user", "content": "cut me"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
