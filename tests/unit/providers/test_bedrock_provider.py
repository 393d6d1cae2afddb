"""The Bedrock adapter: Converse translation, the event-stream reader, and the adapter against
the simulator on loopback, signing every request with SigV4 from the credential chain."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from starlette.applications import Starlette

from gateway.errors import (
    InvalidRequest,
    RateLimited,
    UnsupportedParameter,
    UpstreamError,
    UpstreamRejected,
)
from gateway.protocol.bedrock import chat_request_to_converse, converse_to_chat
from gateway.protocol.bedrock_stream import ConverseStreamTranslator
from gateway.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from gateway.providers.base import Provider
from gateway.providers.bedrock import BedrockProvider
from gateway.providers.config import ProviderConfig
from gateway.providers.eventstream import messages
from gateway.providers.registry import build_provider
from gateway.simulator import eventstream
from tests.support.simulator import add_faults, collect, received, streamed_text
from tests.unit.providers.cloud_support import AWS_KEY_ID, AWS_SECRET, cloud_settings, cloud_sim

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat(*messages: dict[str, Any], **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": list(messages), **fields}
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# --- translation -----------------------------------------------------------------------------


def test_system_tools_and_history_become_converse_blocks() -> None:
    body = chat_request_to_converse(
        chat(
            {"role": "developer", "content": "be brief"},
            user("weather?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": '{"sky": "clear"}'},
            {"role": "tool", "tool_call_id": "t2", "content": "plain"},
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_completion_tokens=99,
            stop="END",
            top_k=5,
        )
    )
    assert body["system"] == [{"text": "be brief"}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][0]["toolUse"] == {
        "toolUseId": "t1",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    results = body["messages"][2]["content"]
    assert results[0]["toolResult"]["content"] == [{"json": {"sky": "clear"}}]
    assert results[1]["toolResult"]["content"] == [{"text": "plain"}]
    assert body["inferenceConfig"] == {"maxTokens": 99, "stopSequences": ["END"]}
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert body["additionalModelRequestFields"] == {"top_k": 5}


def test_images_must_be_data_or_s3_urls() -> None:
    data = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = chat_request_to_converse(chat({"role": "user", "content": [data]}))
    assert body["messages"][0]["content"][0]["image"] == {
        "format": "png",
        "source": {"bytes": "AAAA"},
    }
    web = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(InvalidRequest):
        chat_request_to_converse(chat({"role": "user", "content": [web]}))


def test_unknown_extra_fields_are_refused_before_the_call() -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        chat_request_to_converse(chat(user("hi"), store=True))
    assert refused.value.param == "store"
    body = chat_request_to_converse(chat(user("hi"), guardrailConfig={"guardrailIdentifier": "g"}))
    assert body["guardrailConfig"] == {"guardrailIdentifier": "g"}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop: str, finish: str) -> None:
    content = (
        [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]
        if stop == "tool_use"
        else [{"text": "x"}]
    )
    answer = converse_to_chat(
        {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop},
        model=MODEL,
    )
    assert answer.choices[0].finish_reason == finish


def test_usage_counts_cache_reads_as_prompt_tokens() -> None:
    answer = converse_to_chat(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokens": 10},
        },
        model=MODEL,
    )
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (13, 2)


def test_stream_translator_assembles_tool_calls_and_usage() -> None:
    translator = ConverseStreamTranslator(model=MODEL)
    chunks = [
        *translator.feed("messageStart", {"role": "assistant"}),
        *translator.feed(
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t9", "name": "f"}}},
        ),
        *translator.feed(
            "contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a"'}}}
        ),
        *translator.feed(
            "contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ": 1}"}}}
        ),
        *translator.feed("messageStop", {"stopReason": "tool_use"}),
        *translator.feed("metadata", {"usage": {"inputTokens": 4, "outputTokens": 5}}),
    ]
    calls = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert calls[0].id == "t9" and calls[0].function.name == "f"
    assert "".join(c.function.arguments or "" for c in calls) == '{"a": 1}'
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9
    assert translator.finished


async def _bytes(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@pytest.mark.asyncio
async def test_event_stream_frames_split_anywhere_decode_whole() -> None:
    data = eventstream.event("messageStart", {"role": "assistant"}) + eventstream.event(
        "messageStop", {"stopReason": "end_turn"}
    )
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    decoded = [m async for m in messages(_bytes(*pieces), where="test")]
    assert [(m.name, m.payload) for m in decoded] == [
        ("messageStart", {"role": "assistant"}),
        ("messageStop", {"stopReason": "end_turn"}),
    ]


@pytest.mark.asyncio
async def test_a_corrupt_or_truncated_frame_raises() -> None:
    frame = eventstream.event("messageStart", {"role": "assistant"})
    with pytest.raises(UpstreamError, match="corrupt"):
        [m async for m in messages(_bytes(eventstream.corrupt(frame)), where="test")]
    with pytest.raises(UpstreamError, match="inside an event-stream frame"):
        [m async for m in messages(_bytes(frame[:-3]), where="test")]


# --- the adapter against the simulator --------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[Starlette, str]]:
    with cloud_sim(cloud_settings(api_key="bedrock-api-key")) as served:
        yield served


def bedrock(url: str, **aws: Any) -> Provider:
    settings = {"region": "us-east-1", "access_key_id": AWS_KEY_ID, "secret_access_key": AWS_SECRET}
    settings.update(aws)
    config = ProviderConfig.model_validate({"preset": "bedrock", "base_url": url, "aws": settings})
    return build_provider("bedrock", config)


@pytest_asyncio.fixture
async def provider(sim: tuple[Starlette, str]) -> AsyncIterator[Provider]:
    adapter = bedrock(sim[1])
    yield adapter
    await adapter.aclose()


def test_the_preset_builds_the_bedrock_adapter_with_a_regional_url() -> None:
    config = ProviderConfig.model_validate({"preset": "bedrock", "aws": {"region": "eu-west-3"}})
    assert config.resolved_preset.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert config.disabled_reason() is None
    assert (
        ProviderConfig(preset="bedrock").disabled_reason()
        == "aws.region (or AWS_REGION) is not set"
    )
    assert isinstance(build_provider("b", config), BedrockProvider)


@pytest.mark.asyncio
async def test_signed_chat_answers_with_usage(
    provider: Provider, sim: tuple[Starlette, str]
) -> None:
    answer = await provider.chat(
        chat({"role": "system", "content": "terse"}, user("hello bedrock"))
    )
    assert answer.choices[0].message.content is not None
    assert answer.choices[0].message.content.startswith(f"Simulated answer from {MODEL}: hello")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens == 3
    request = (await received(sim[1]))[-1]
    assert request["path"] == f"/model/{MODEL}/converse"
    assert request["json"]["system"] == [{"text": "terse"}]


@pytest.mark.asyncio
async def test_stream_decodes_event_frames_into_chunks(provider: Provider) -> None:
    chunks = await collect(provider.chat_stream(chat(user("stream this"))))
    assert streamed_text(chunks).startswith(f"Simulated answer from {MODEL}: stream this")
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


@pytest.mark.asyncio
async def test_streamed_tool_call_arrives_whole(provider: Provider) -> None:
    chunks = await collect(
        provider.chat_stream(chat(user("weather?"), tools=[WEATHER_TOOL], tool_choice="required"))
    )
    calls = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "example"}
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["tool_calls"]


@pytest.mark.asyncio
async def test_inference_profile_prefixes_bare_model_ids(sim: tuple[Starlette, str]) -> None:
    adapter = bedrock(sim[1], region="eu-central-1", inference_profile="eu")
    try:
        await adapter.chat(chat(user("hi")))
        await adapter.chat(
            chat(user("hi")).model_copy(update={"model": "us.amazon.nova-lite-v1:0"})
        )
    except InvalidRequest as exc:
        # The second names a US profile from an EU region: Bedrock refuses it, as it should.
        assert "model identifier is invalid" in exc.message
    else:
        raise AssertionError("a US profile from eu-central-1 was accepted")
    finally:
        await adapter.aclose()
    paths = [r["path"] for r in await received(sim[1])]
    assert f"/model/eu.{MODEL}/converse" in paths


@pytest.mark.asyncio
async def test_titan_and_cohere_embeddings(provider: Provider) -> None:
    titan = await provider.embeddings(
        EmbeddingRequest(model="amazon.titan-embed-text-v2:0", input=["a b", "c"], dimensions=256)
    )
    assert [len(d.embedding) for d in titan.data] == [256, 256]
    assert titan.usage.prompt_tokens == 3
    cohere = await provider.embeddings(
        EmbeddingRequest.model_validate(
            {"model": "cohere.embed-english-v3", "input": "x y", "input_type": "search_query"}
        )
    )
    assert len(cohere.data) == 1 and len(cohere.data[0].embedding) == 8
    assert cohere.usage.prompt_tokens == 2


@pytest.mark.asyncio
async def test_unsupported_parameters_are_refused_before_the_call(
    provider: Provider, sim: tuple[Starlette, str]
) -> None:
    before = len(await received(sim[1]))
    with pytest.raises(UnsupportedParameter) as refused:
        await provider.chat(chat(user("hi"), logprobs=True))
    assert refused.value.param == "logprobs"
    assert len(await received(sim[1])) == before


@pytest.mark.asyncio
async def test_a_wrong_secret_is_a_rejection_not_a_retry(sim: tuple[Starlette, str]) -> None:
    adapter = bedrock(sim[1], secret_access_key="wrong")
    with pytest.raises(UpstreamRejected, match="InvalidSignatureException"):
        await adapter.chat(chat(user("hi")))
    await adapter.aclose()


@pytest.mark.asyncio
async def test_throttling_maps_to_rate_limited(
    provider: Provider, sim: tuple[Starlette, str]
) -> None:
    await add_faults(
        sim[1], {"kind": "status", "status": 429, "retry_after": 2, "match_path": "/converse"}
    )
    with pytest.raises(RateLimited) as limited:
        await provider.chat(chat(user("hi")))
    assert limited.value.headers == {"retry-after": "2"}
    assert "ThrottlingException" in limited.value.message


@pytest.mark.asyncio
async def test_a_corrupt_frame_mid_stream_raises(
    provider: Provider, sim: tuple[Starlette, str]
) -> None:
    await add_faults(
        sim[1], {"kind": "malformed", "after_chunks": 2, "match_path": "converse-stream"}
    )
    with pytest.raises(UpstreamError, match="corrupt event-stream frame"):
        await collect(provider.chat_stream(chat(user("hi"))))


@pytest.mark.asyncio
async def test_a_cut_stream_raises_instead_of_ending_cleanly(
    provider: Provider, sim: tuple[Starlette, str]
) -> None:
    await add_faults(sim[1], {"kind": "cut", "after_chunks": 2, "match_path": "converse-stream"})
    with pytest.raises(UpstreamError):
        await collect(provider.chat_stream(chat(user("hi"))))


@pytest.mark.asyncio
async def test_credentials_come_from_the_shared_credentials_file(
    sim: tuple[Starlette, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[prod]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    adapter = bedrock(sim[1], access_key_id=None, secret_access_key=None, profile="prod")
    answer = await adapter.chat(chat(user("from the chain")))
    await adapter.aclose()
    assert answer.choices[0].message.content is not None


@pytest.mark.asyncio
async def test_no_credentials_anywhere_is_a_clear_rejection(
    sim: tuple[Starlette, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    adapter = bedrock(sim[1], access_key_id=None, secret_access_key=None)
    with pytest.raises(UpstreamRejected, match="no AWS credentials"):
        await adapter.chat(chat(user("hi")))
    await adapter.aclose()


@pytest.mark.asyncio
async def test_a_bedrock_api_key_is_sent_as_a_bearer_token(sim: tuple[Starlette, str]) -> None:
    config = ProviderConfig.model_validate(
        {
            "preset": "bedrock",
            "base_url": sim[1],
            "api_key": "bedrock-api-key",
            "aws": {"region": "us-west-2"},
        }
    )
    adapter = build_provider("bedrock", config)
    answer = await adapter.chat(chat(user("keyed")))
    await adapter.aclose()
    assert answer.choices[0].finish_reason == "stop"
