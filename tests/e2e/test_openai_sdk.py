"""The official `openai` SDK against a running gateway: only base_url and api_key change."""

from __future__ import annotations

import base64
import json
import struct

import openai
import pytest

from tests.e2e.conftest import Gateway


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=gateway.api_key, max_retries=0)


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_models_list_shows_enabled_aliases_and_hides_keyless_providers(
    client: openai.OpenAI,
) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"sim-small", "sim-claude", "sim-gemini", "sim-fallback"} <= ids
    assert "gpt-4o-mini" not in ids  # its provider has no key


def test_models_retrieve_known_model_and_404_for_unknown(client: openai.OpenAI) -> None:
    assert client.models.retrieve("sim-small").id == "sim-small"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.code == "model_not_found"


def test_chat_completion_answers_with_gateway_headers(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=_ask("What is the capital of France?")
    )
    completion = raw.parse()
    assert completion.model == "sim-small"
    assert "capital of France" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-raygate-route"] == "simulator/sim-small"
    assert raw.headers["x-raygate-request-id"].startswith("req_")
    assert float(raw.headers["x-raygate-overhead-ms"]) >= 0
    upstream = gateway.upstream_requests()[-1]
    assert upstream["json"]["model"] == "sim-small"  # type: ignore[index]


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim-small",
            messages=_ask("stream me a short answer"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream me a short answer" in text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == (
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_chat_stream_without_include_usage_sends_no_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="sim-small", messages=_ask("hi"), stream=True)
    )
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("model", ["sim-small", "sim-claude", "sim-gemini"])
def test_tool_call_and_tool_result_round_trip(client: openai.OpenAI, model: str) -> None:
    first = client.chat.completions.create(
        model=model, messages=_ask("Weather in Paris?"), tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    second = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL],
        messages=[
            *_ask("Weather in Paris?"),
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"},
        ],
    )
    assert "sunny, 21 degrees" in (second.choices[0].message.content or "")


@pytest.mark.parametrize("model", ["sim-small", "sim-claude", "sim-gemini"])
def test_streamed_tool_call_assembles_into_valid_arguments(
    client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(
        model=model, messages=_ask("Weather in Oslo?"), tools=[WEATHER_TOOL], stream=True
    )
    name, arguments = "", ""
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
    assert name == "get_weather"
    assert "city" in json.loads(arguments)


def test_response_format_json_schema_returns_matching_json(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    completion = client.chat.completions.create(
        model="sim-small",
        messages=_ask("Make up a person"),
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    person = json.loads(completion.choices[0].message.content or "")
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


def test_n_returns_n_distinct_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="sim-small", messages=_ask("hi"), n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len({c.message.content for c in completion.choices}) == 3


def test_stop_sequence_cuts_the_answer(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="sim-small", messages=_ask("alpha beta gamma"))
    cut = client.chat.completions.create(
        model="sim-small", messages=_ask("alpha beta gamma"), stop=["beta"]
    )
    assert "beta" in (full.choices[0].message.content or "")
    assert "beta" not in (cut.choices[0].message.content or "")
    assert cut.choices[0].finish_reason == "stop"


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="sim-small", messages=_ask("tell me a long story"), max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


@pytest.mark.parametrize("model", ["sim-claude", "sim-gemini"])
def test_chat_through_other_wire_formats_streams_with_usage(
    client: openai.OpenAI, model: str
) -> None:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": "Be brief."}, *_ask("ping over the wire")],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "ping over the wire" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_legacy_completion_plain_and_streamed(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="sim-small", prompt="Once upon a time")
    assert "Once upon a time" in completion.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="sim-small", prompt="Once upon a time", stream=True
        )
        if c.choices
    )
    assert "Once upon a time" in streamed


def test_legacy_completion_through_chat_only_provider(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="sim-claude", prompt="Say hello")
    assert "Say hello" in completion.choices[0].text


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI, encoding: str) -> None:
    response = client.embeddings.create(
        model="sim-embed",
        input=["hello world", "hello world", "something else"],
        encoding_format=encoding,  # type: ignore[arg-type]
    )
    # The SDK decodes base64 only when it chose the encoding itself; asked for, it is the
    # little-endian float32 string that the wire carries.
    a, b, c = (_floats(d.embedding) for d in response.data)
    assert a == b and a != c
    assert abs(sum(x * x for x in a) - 1.0) < 1e-3


def _floats(embedding: list[float] | str) -> list[float]:
    if isinstance(embedding, list):
        return embedding
    raw = base64.b64decode(embedding)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_embeddings_on_a_gemini_wire_provider(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="sim-gemini", input="hello")
    assert len(response.data) == 1 and len(response.data[0].embedding) > 0


def test_fallback_answers_from_second_target_and_says_so(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="sim-fallback", messages=_ask("are you there?")
    )
    assert "are you there?" in (raw.parse().choices[0].message.content or "")
    assert raw.headers["x-raygate-route"] == "simulator/sim-backup; tried=nowhere/sim-gone:502"


def test_streaming_falls_over_to_the_next_target_before_the_first_token(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    gateway.inject(kind="status", status=503, count=1, match_model="sim-primary")
    raw = client.chat.completions.with_raw_response.create(
        model="sim-pair", messages=_ask("stream anyway"), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert "stream anyway" in text
    assert (
        raw.headers["x-raygate-route"] == "simulator/sim-secondary; tried=simulator/sim-primary:503"
    )
