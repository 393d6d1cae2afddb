"""The upstream simulator: wire formats, determinism, faults and the control API.

Protocol tests run in-process through `httpx.ASGITransport`; connection-level behaviour
(cut, hang, client disconnects) and the official SDKs run against a real uvicorn server on
a loopback port.
"""

from __future__ import annotations

import base64
import json
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette

from gateway.simulator import Fault, SimulatorSettings, create_app
from gateway.simulator.cli import parse_args
from gateway.simulator.content import synthesize
from gateway.simulator.faults import SimulatedCut
from gateway.simulator.state import SimulatorState

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}


def _chat(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": content}], **extra}


def _sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def _sim(app: Starlette) -> SimulatorState:
    state: SimulatorState = app.state.sim
    return state


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait for a condition another thread makes true (bounded; not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def app() -> Starlette:
    return create_app(SimulatorSettings(seed=7))


@pytest_asyncio.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        yield http


class _Server(uvicorn.Server):
    """uvicorn in a background thread that signals once its socket is bound."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    @property
    def url(self) -> str:
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


class LiveSimulator:
    """A simulator served on a free loopback port."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self.server = _Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> SimulatorState:
        return _sim(self.app)

    def __enter__(self) -> LiveSimulator:
        self._thread.start()
        assert self.server.ready.wait(10), "simulator did not start"
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)

    def reset(self) -> None:
        self.state.faults.clear()
        self.state.requests.clear()
        self.state.stats.reset()


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveSimulator]:
    with LiveSimulator(SimulatorSettings(seed=3)) as live:
        yield live


@pytest.fixture
def live(live_server: LiveSimulator) -> LiveSimulator:
    live_server.reset()
    return live_server


@pytest.fixture(scope="module")
def paced_server() -> Iterator[LiveSimulator]:
    with LiveSimulator(SimulatorSettings(tokens_per_s=50, answer_words=400)) as live:
        yield live


# --------------------------------------------------------------------------- content


@pytest.mark.asyncio
async def test_chat_answer_is_deterministic_and_usage_counts_words(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.post("/v1/chat/completions", json=_chat("hello there"))).json()
    second = (await client.post("/v1/chat/completions", json=_chat("hello there"))).json()
    other = (await client.post("/v1/chat/completions", json=_chat("goodbye now"))).json()

    content = first["choices"][0]["message"]["content"]
    assert first["object"] == "chat.completion"
    assert content.startswith("Simulated answer from sim-small: hello there ")
    assert len(content.split()) == 4 + 24  # prefix words + answer_words
    assert second["choices"][0]["message"]["content"] == content
    assert other["choices"][0]["message"]["content"] != content
    assert first["choices"][0]["finish_reason"] == "stop"
    assert first["usage"] == {"prompt_tokens": 2, "completion_tokens": 28, "total_tokens": 30}


@pytest.mark.asyncio
async def test_max_tokens_truncates_with_finish_reason_length(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/chat/completions", json=_chat(max_tokens=5))).json()

    assert body["choices"][0]["message"]["content"] == "Simulated answer from sim-small: hello"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


@pytest.mark.asyncio
async def test_stop_cuts_before_first_occurrence(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/chat/completions", json=_chat(stop=["zzz", "there"]))).json()

    assert body["choices"][0]["message"]["content"] == "Simulated answer from sim-small: hello "
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.asyncio
async def test_n_returns_distinct_choices(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/chat/completions", json=_chat(n=3))).json()

    texts = [choice["message"]["content"] for choice in body["choices"]]
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert texts[2].endswith("(choice 2)")
    assert body["usage"]["completion_tokens"] == sum(len(t.split()) for t in texts)


@pytest.mark.asyncio
async def test_tool_call_arguments_are_synthesised_from_the_schema(
    client: httpx.AsyncClient,
) -> None:
    other = {"type": "function", "function": {"name": "noop", "parameters": {}}}
    request = _chat(
        "weather in Paris?",
        tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    body = (await client.post("/v1/chat/completions", json=request)).json()

    choice = body["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    assert arguments == {"city": "example", "unit": "celsius", "days": 1}


def test_schema_synthesis_covers_every_json_type() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "a": {"type": "array", "items": {"type": "string"}},
            "o": {"type": "object", "properties": {"inner": {"type": ["null", "integer"]}}},
            "e": {"enum": ["first", "second"]},
            "g": {"type": "STRING"},
        },
        "required": ["s", "extra"],
    }
    assert synthesize(schema) == {
        "s": "example",
        "i": 1,
        "n": 1.0,
        "b": True,
        "a": [],
        "o": {"inner": 1},
        "e": "first",
        "g": "example",
        "extra": "example",
    }


@pytest.mark.asyncio
async def test_answer_after_tool_result_quotes_it_and_tool_choice_none_answers_in_text(
    client: httpx.AsyncClient,
) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]
    request = {"model": "sim-small", "messages": messages, "tools": [WEATHER_TOOL]}
    after_tool = (await client.post("/v1/chat/completions", json=request)).json()
    no_tools = (
        await client.post(
            "/v1/chat/completions", json=_chat(tools=[WEATHER_TOOL], tool_choice="none")
        )
    ).json()

    assert "sunny, 21C" in after_tool["choices"][0]["message"]["content"]
    assert after_tool["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in no_tools["choices"][0]["message"]
    assert no_tools["choices"][0]["message"]["content"].startswith("Simulated answer")


@pytest.mark.asyncio
async def test_response_format_json_object_and_json_schema(client: httpx.AsyncClient) -> None:
    json_object = _chat(response_format={"type": "json_object"})
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    }
    json_schema = _chat(response_format={"type": "json_schema", "json_schema": {"schema": schema}})

    plain = (await client.post("/v1/chat/completions", json=json_object)).json()
    structured = (await client.post("/v1/chat/completions", json=json_schema)).json()

    answer = json.loads(plain["choices"][0]["message"]["content"])
    assert answer["answer"].startswith("Simulated answer from sim-small: hello there")
    assert json.loads(structured["choices"][0]["message"]["content"]) == {
        "name": "example",
        "age": 1,
    }


@pytest.mark.asyncio
async def test_embeddings_are_deterministic_unit_vectors_and_base64_matches_floats(
    client: httpx.AsyncClient,
) -> None:
    request = {"model": "sim-embed", "input": ["alpha", "beta", "alpha"], "dimensions": 16}
    floats = (await client.post("/v1/embeddings", json=request)).json()
    encoded = (
        await client.post("/v1/embeddings", json={**request, "encoding_format": "base64"})
    ).json()
    default = (await client.post("/v1/embeddings", json={"model": "e", "input": "alpha"})).json()

    vectors = [item["embedding"] for item in floats["data"]]
    assert floats["object"] == "list" and [d["index"] for d in floats["data"]] == [0, 1, 2]
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert all(abs(sum(v * v for v in vector) - 1) < 1e-9 for vector in vectors)
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    decoded = struct.unpack("<16f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert decoded == pytest.approx(vectors[0], abs=1e-6)
    assert len(default["data"][0]["embedding"]) == 64


# --------------------------------------------------------------------------- OpenAI wire


@pytest.mark.asyncio
async def test_chat_stream_sends_role_word_deltas_finish_usage_and_done(
    client: httpx.AsyncClient,
) -> None:
    plain = (await client.post("/v1/chat/completions", json=_chat())).json()
    request = _chat(stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", json=request)

    assert response.headers["content-type"].startswith("text/event-stream")
    data = _sse_data(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert deltas[1:3] == ["Simulated", " answer"]
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


@pytest.mark.asyncio
async def test_chat_stream_tool_call_deltas_follow_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=_chat(stream=True, tools=[WEATHER_TOOL])
    )

    chunks = [json.loads(d) for d in _sse_data(response.text)[:-1]]
    calls = [c["choices"][0]["delta"].get("tool_calls") for c in chunks]
    opening = calls[0][0]
    assert opening["index"] == 0 and opening["id"].startswith("call_")
    assert opening["type"] == "function" and opening["function"]["name"] == "get_weather"
    fragments = [call[0]["function"]["arguments"] for call in calls[1:] if call]
    assert len(fragments) > 1
    assert json.loads("".join(fragments)) == {"city": "example", "unit": "celsius", "days": 1}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.asyncio
async def test_legacy_completions_accept_prompt_lists_and_stream(client: httpx.AsyncClient) -> None:
    request = {"model": "sim-small", "prompt": ["one", "two"], "max_tokens": 50}
    plain = (await client.post("/v1/completions", json=request)).json()
    streamed = await client.post("/v1/completions", json={**request, "stream": True})

    assert plain["object"] == "text_completion"
    assert [c["index"] for c in plain["choices"]] == [0, 1]
    assert plain["choices"][1]["text"].startswith("Simulated answer from sim-small: two")
    chunks = [json.loads(d) for d in _sse_data(streamed.text)[:-1]]
    text_0 = "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == 0)
    assert text_0 == plain["choices"][0]["text"]
    assert _sse_data(streamed.text)[-1] == "[DONE]"


@pytest.mark.asyncio
async def test_models_list_and_unknown_model_is_404_in_openai_shape(
    client: httpx.AsyncClient,
) -> None:
    listing = (await client.get("/v1/models")).json()
    known = await client.get("/v1/models/gpt-4o-mini")
    unknown = await client.get("/v1/models/not-a-model")

    assert {"sim-small", "gemini-2.0-flash"} <= {m["id"] for m in listing["data"]}
    assert known.json()["object"] == "model"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.asyncio
async def test_malformed_json_and_missing_fields_are_400_in_openai_shape(
    client: httpx.AsyncClient,
) -> None:
    broken = await client.post("/v1/chat/completions", content=b"{not json")
    no_model = await client.post("/v1/chat/completions", json={"messages": []})
    no_messages = await client.post("/v1/chat/completions", json={"model": "sim-small"})

    assert [r.status_code for r in (broken, no_model, no_messages)] == [400, 400, 400]
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert no_model.json()["error"]["param"] == "model"
    assert no_messages.json()["error"]["param"] == "messages"


# --------------------------------------------------------------------------- Anthropic wire


@pytest.mark.asyncio
async def test_anthropic_requires_version_header_and_max_tokens(client: httpx.AsyncClient) -> None:
    request = {"model": "claude-3-5-haiku-latest", "max_tokens": 20, "messages": []}
    no_version = await client.post("/v1/messages", json=request)
    missing = {k: v for k, v in request.items() if k != "max_tokens"}
    no_max = await client.post("/v1/messages", headers=ANTHROPIC_HEADERS, json=missing)

    assert no_version.status_code == 400
    assert no_version.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "anthropic-version: header is required",
        },
    }
    assert no_max.status_code == 400
    assert "max_tokens" in no_max.json()["error"]["message"]


@pytest.mark.asyncio
async def test_anthropic_stop_sequences_tool_use_and_tool_result(client: httpx.AsyncClient) -> None:
    base = {"model": "claude-3-5-haiku-latest", "max_tokens": 100, "system": "be brief"}
    ask = [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    stopped = await client.post(
        "/v1/messages",
        headers=ANTHROPIC_HEADERS,
        json={**base, "messages": ask, "stop_sequences": ["there"]},
    )
    called = await client.post(
        "/v1/messages", headers=ANTHROPIC_HEADERS, json={**base, "messages": ask, "tools": [tool]}
    )
    use = called.json()["content"][0]
    answered_messages = [
        *ask,
        {"role": "assistant", "content": [use]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "rainy"}],
        },
    ]
    answered = await client.post(
        "/v1/messages",
        headers=ANTHROPIC_HEADERS,
        json={**base, "messages": answered_messages, "tools": [tool]},
    )

    assert stopped.json()["stop_reason"] == "stop_sequence"
    assert stopped.json()["stop_sequence"] == "there"
    assert stopped.json()["content"] == [
        {"type": "text", "text": "Simulated answer from claude-3-5-haiku-latest: hello "}
    ]
    assert called.json()["stop_reason"] == "tool_use"
    assert use["type"] == "tool_use" and use["id"].startswith("toolu_")
    assert use["input"] == {"city": "example", "unit": "celsius", "days": 1}
    assert answered.json()["stop_reason"] == "end_turn"
    assert "rainy" in answered.json()["content"][0]["text"]
    assert stopped.json()["usage"]["input_tokens"] == 4  # "be brief" + "hello there"


@pytest.mark.asyncio
async def test_anthropic_stream_emits_event_sequence(client: httpx.AsyncClient) -> None:
    request = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 6,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = await client.post("/v1/messages", headers=ANTHROPIC_HEADERS, json=request)

    events = [
        line[len("event: ") :] for line in response.text.splitlines() if line.startswith("event: ")
    ]
    data = [json.loads(d) for d in _sse_data(response.text)]
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert [d["type"] for d in data] == events
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == "Simulated answer from claude-3-5-haiku-latest: hi yankee"
    assert data[-2]["delta"]["stop_reason"] == "max_tokens"
    assert data[-2]["usage"]["output_tokens"] == 6


# --------------------------------------------------------------------------- Gemini wire


@pytest.mark.asyncio
async def test_gemini_generate_content_and_sse_stream_agree(client: httpx.AsyncClient) -> None:
    request = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "generationConfig": {"maxOutputTokens": 6},
    }
    plain = await client.post("/v1beta/models/gemini-2.0-flash:generateContent", json=request)
    streamed = await client.post(
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", json=request
    )

    body = plain.json()
    candidate = body["candidates"][0]
    assert candidate["content"]["role"] == "model" and candidate["finishReason"] == "MAX_TOKENS"
    assert candidate["content"]["parts"][0]["text"] == (
        "Simulated answer from gemini-2.0-flash: hello there"
    )
    assert body["usageMetadata"] == {
        "promptTokenCount": 4,
        "candidatesTokenCount": 6,
        "totalTokenCount": 10,
    }
    assert body["modelVersion"] == "gemini-2.0-flash"
    data = _sse_data(streamed.text)
    assert "[DONE]" not in data
    chunks = [json.loads(d) for d in data]
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == candidate["content"]["parts"][0]["text"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert chunks[-1]["usageMetadata"] == body["usageMetadata"]


@pytest.mark.asyncio
async def test_gemini_function_call_and_embeddings(client: httpx.AsyncClient) -> None:
    declaration = {
        "name": "get_weather",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
    }
    request = {
        "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
        "tools": [{"functionDeclarations": [declaration]}],
    }
    called = (
        await client.post("/v1beta/models/gemini-2.0-flash:generateContent", json=request)
    ).json()
    single = await client.post(
        "/v1beta/models/text-embedding-004:embedContent",
        json={"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 8},
    )
    batch = await client.post(
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        json={"requests": [{"content": {"parts": [{"text": t}]}} for t in ("alpha", "beta")]},
    )

    part = called["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "get_weather", "args": {"city": "example"}}}
    assert len(single.json()["embedding"]["values"]) == 8
    values = [e["values"] for e in batch.json()["embeddings"]]
    assert len(values) == 2 and len(values[0]) == 64 and values[0] != values[1]


@pytest.mark.asyncio
async def test_gemini_errors_use_google_shape(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1beta/models/gemini-2.0-flash:generateContent", json={})
    unknown = await client.post("/v1beta/models/gemini-2.0-flash:doMagic", json={})

    assert missing.status_code == 400
    assert missing.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert missing.json()["error"]["code"] == 400
    assert unknown.status_code == 404


# --------------------------------------------------------------------------- credentials


@pytest.mark.asyncio
async def test_api_key_is_checked_in_each_providers_header() -> None:
    app = create_app(SimulatorSettings(api_key="secret"))
    gemini = "/v1beta/models/gemini-2.0-flash:generateContent"
    gemini_body = {"contents": [{"parts": [{"text": "hi"}]}]}
    anthropic_body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        openai_bad = await c.post(
            "/v1/chat/completions", json=_chat(), headers={"authorization": "Bearer no"}
        )
        openai_ok = await c.post(
            "/v1/chat/completions", json=_chat(), headers={"authorization": "Bearer secret"}
        )
        anthropic_bad = await c.post("/v1/messages", json=anthropic_body, headers=ANTHROPIC_HEADERS)
        anthropic_ok = await c.post(
            "/v1/messages",
            json=anthropic_body,
            headers={**ANTHROPIC_HEADERS, "x-api-key": "secret"},
        )
        gemini_missing = await c.post(gemini, json=gemini_body)
        gemini_header = await c.post(gemini, json=gemini_body, headers={"x-goog-api-key": "secret"})
        gemini_query = await c.post(f"{gemini}?key=secret", json=gemini_body)
        logged = (await c.get("/_sim/requests")).json()["requests"]

    assert openai_bad.status_code == 401 and openai_bad.json()["error"]["code"] == "invalid_api_key"
    assert openai_ok.status_code == 200
    assert anthropic_bad.status_code == 401
    assert anthropic_bad.json()["error"]["type"] == "authentication_error"
    assert anthropic_ok.status_code == 200
    assert gemini_missing.status_code == 403
    assert gemini_missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert gemini_header.status_code == 200 and gemini_query.status_code == 200
    assert logged[1]["headers"]["authorization"] == "<redacted>"
    assert logged[3]["headers"]["x-api-key"] == "<redacted>"


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_status_fault_returns_429_with_retry_after_in_openai_shape(
    client: httpx.AsyncClient,
) -> None:
    fault = {"kind": "status", "status": 429, "retry_after": 2}
    added = await client.post("/_sim/faults", json={"faults": [fault]})
    failed = await client.post("/v1/chat/completions", json=_chat())
    recovered = await client.post("/v1/chat/completions", json=_chat())

    assert added.json()["faults"][0]["kind"] == "status"
    assert failed.status_code == 429
    assert failed.headers["retry-after"] == "2"
    assert failed.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(failed.json()["error"]) == {"message", "type", "param", "code"}
    assert recovered.status_code == 200
    assert (await client.get("/_sim/stats")).json()["faults_applied"] == 1


@pytest.mark.asyncio
async def test_status_faults_use_anthropic_and_gemini_error_shapes(
    client: httpx.AsyncClient,
) -> None:
    faults = [{"kind": "status", "status": 529}, {"kind": "status", "status": 503}]
    await client.post("/_sim/faults", json={"faults": faults})
    overloaded = await client.post(
        "/v1/messages",
        headers=ANTHROPIC_HEADERS,
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    unavailable = await client.post(
        "/v1beta/models/g:generateContent", json={"contents": [{"parts": [{"text": "x"}]}]}
    )

    assert overloaded.status_code == 529
    assert overloaded.json()["type"] == "error"
    assert overloaded.json()["error"]["type"] == "overloaded_error"
    assert unavailable.status_code == 503
    assert unavailable.json()["error"] == {
        "code": 503,
        "message": unavailable.json()["error"]["message"],
        "status": "UNAVAILABLE",
    }


@pytest.mark.asyncio
async def test_faults_are_consumed_in_order_by_matching_requests_only(
    client: httpx.AsyncClient,
) -> None:
    faults = [
        {"kind": "status", "status": 500, "match_model": "sim-large"},
        {"kind": "status", "status": 502, "count": 2, "match_path": "/v1/chat"},
        {"kind": "status", "status": 503, "count": None},
    ]
    await client.post("/_sim/faults", json={"faults": faults})
    statuses = [
        (await client.post("/v1/chat/completions", json=_chat())).status_code for _ in range(3)
    ]
    embedding = await client.post("/v1/embeddings", json={"model": "sim-large", "input": "x"})
    pending = (await client.get("/_sim/faults")).json()["faults"]
    cleared = await client.delete("/_sim/faults")
    after = await client.post("/v1/chat/completions", json=_chat())

    assert statuses == [502, 502, 503]
    assert embedding.status_code == 500
    assert [(f["status"], f["count"]) for f in pending] == [(503, None)]
    assert cleared.json() == {"faults": []}
    assert after.status_code == 200


@pytest.mark.asyncio
async def test_invalid_fault_is_rejected_by_control_api(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sim/faults", json={"faults": [{"kind": "explode"}]})

    assert response.status_code == 400
    assert (await client.get("/_sim/faults")).json() == {"faults": []}


@pytest.mark.asyncio
async def test_delay_fault_and_latency_postpone_the_first_byte() -> None:
    app = create_app(SimulatorSettings(latency_ms=30))
    _sim(app).faults.extend([Fault(kind="delay", delay_ms=120)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        started = time.perf_counter()
        delayed = await c.post("/v1/chat/completions", json=_chat())
        delayed_s = time.perf_counter() - started
        started = time.perf_counter()
        await c.post("/v1/chat/completions", json=_chat())
        normal_s = time.perf_counter() - started

    assert delayed.status_code == 200
    assert delayed_s >= 0.150
    assert 0.030 <= normal_s < delayed_s


def test_latency_jitter_is_seeded_and_truncated_at_zero() -> None:
    settings = SimulatorSettings(latency_ms=10, latency_jitter_ms=50, seed=42)
    first, second = SimulatorState(settings), SimulatorState(settings)

    draws = [first.latency_s() for _ in range(200)]
    assert draws == [second.latency_s() for _ in range(200)]
    assert min(draws) == 0.0 and max(draws) > 0.01


@pytest.mark.asyncio
async def test_malformed_fault_sends_invalid_json_plain_and_mid_stream(
    client: httpx.AsyncClient,
) -> None:
    faults = [{"kind": "malformed"}, {"kind": "malformed", "after_chunks": 2}]
    await client.post("/_sim/faults", json={"faults": faults})
    plain = await client.post("/v1/chat/completions", json=_chat())
    streamed = await client.post("/v1/chat/completions", json=_chat(stream=True))

    assert plain.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        plain.json()
    data = _sse_data(streamed.text)
    assert len(data) == 3 and "[DONE]" not in data
    assert [json.loads(d)["object"] for d in data[:2]] == ["chat.completion.chunk"] * 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[2])


@pytest.mark.asyncio
async def test_cut_without_a_reachable_transport_fails_the_request_in_process(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    _sim(app).faults.extend([Fault(kind="cut"), Fault(kind="cut", after_chunks=1)])

    with pytest.raises(SimulatedCut):
        await client.post("/v1/chat/completions", json=_chat())
    with pytest.raises(SimulatedCut):
        await client.post("/v1/chat/completions", json=_chat(stream=True))
    assert _sim(app).stats.faults_applied == 2


# --------------------------------------------------------------------------- control API


@pytest.mark.asyncio
async def test_request_log_and_stats(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=_chat(), headers={"Authorization": "Bearer k"})
    await client.post("/v1/chat/completions", json=_chat(stream=True))
    await client.get("/v1/models")
    health = await client.get("/healthz")
    logged = (await client.get("/_sim/requests")).json()["requests"]
    stats = (await client.get("/_sim/stats")).json()
    await client.delete("/_sim/requests")

    assert health.json() == {"status": "ok"}
    assert [r["path"] for r in logged] == ["/v1/chat/completions"] * 2 + ["/v1/models"]
    assert logged[0]["method"] == "POST" and logged[0]["json"] == _chat()
    assert logged[0]["headers"]["authorization"] == "<redacted>"
    assert logged[2]["json"] is None and isinstance(logged[0]["received_at"], float)
    assert stats["requests"] == {"/v1/chat/completions": 2, "/v1/models": 1}
    assert stats["streams_completed"] == 1 and stats["streams_aborted_by_client"] == 0
    assert (await client.get("/_sim/requests")).json() == {"requests": []}


def test_cli_parses_settings_and_repeated_faults() -> None:
    settings = parse_args(
        [
            "--port", "9000", "--latency-ms", "5", "--seed", "1", "--api-key", "k",
            "--fault", '{"kind":"status","status":503,"count":null}',
            "--fault", '{"kind":"cut","after_chunks":3}',
        ]
    )  # fmt: skip

    assert settings.port == 9000 and settings.latency_ms == 5 and settings.api_key == "k"
    assert [(f.kind, f.count) for f in settings.faults] == [("status", None), ("cut", 1)]
    with pytest.raises(SystemExit):
        parse_args(["--fault", '{"kind":"nope"}'])


def test_cli_main_announces_its_address_and_serves() -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; from gateway.simulator import main; sys.exit(main())",
    ]
    with subprocess.Popen([*command, "--port", "0"], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("raygate simulator listening on http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1]
            assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        finally:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


# --------------------------------------------------------------------------- live server


def test_cut_stream_ends_without_done_and_incomplete_body(live: LiveSimulator) -> None:
    live.state.faults.extend([Fault(kind="cut", after_chunks=3)])
    received: list[str] = []

    with httpx.Client(base_url=live.url, timeout=5) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            with http.stream("POST", "/v1/chat/completions", json=_chat(stream=True)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.append(line[len("data: ") :])
        assert http.get("/healthz").status_code == 200

    assert len(received) == 3
    assert "[DONE]" not in received
    assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in received)


def test_cut_plain_request_closes_connection_without_response(live: LiveSimulator) -> None:
    live.state.faults.extend([Fault(kind="cut")])

    with httpx.Client(base_url=live.url, timeout=5) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            http.post("/v1/chat/completions", json=_chat())
        assert http.post("/v1/chat/completions", json=_chat()).status_code == 200

    assert live.state.stats.faults_applied == 1


def test_hang_never_answers_and_ends_when_client_disconnects(live: LiveSimulator) -> None:
    live.state.faults.extend([Fault(kind="hang")])
    tasks = live.server.server_state.tasks

    with httpx.Client(base_url=live.url) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=_chat(), timeout=httpx.Timeout(5, read=0.3))
        assert http.get("/healthz", timeout=5).status_code == 200

    assert _eventually(lambda: not tasks), "the hung request outlived its client"
    assert live.state.stats.faults_applied == 1


def test_hang_after_chunks_stalls_a_stream_until_the_client_leaves(live: LiveSimulator) -> None:
    live.reset()
    live.state.faults.extend([Fault(kind="hang", after_chunks=2)])
    stats = live.state.stats

    with httpx.Client(base_url=live.url) as http:
        timeout = httpx.Timeout(5, read=0.5)
        with http.stream(
            "POST", "/v1/chat/completions", json=_chat(stream=True), timeout=timeout
        ) as response:
            assert response.status_code == 200
            received: list[str] = []
            with pytest.raises(httpx.ReadTimeout):
                for line in response.iter_lines():
                    received.append(line)
    assert sum(line.startswith("data: ") for line in received) == 2
    assert _eventually(lambda: stats.streams_aborted_by_client == 1)


def test_stream_abandoned_by_client_is_counted(paced_server: LiveSimulator) -> None:
    paced_server.reset()
    stats = paced_server.state.stats

    with httpx.Client(base_url=paced_server.url, timeout=5) as http:
        with http.stream("POST", "/v1/chat/completions", json=_chat(stream=True)) as response:
            first = next(response.iter_lines())
        assert first.startswith("data: ")

    assert _eventually(lambda: stats.streams_aborted_by_client == 1)
    assert stats.streams_completed == 0


def test_openai_sdk_chat_stream_tools_embeddings_and_errors(live: LiveSimulator) -> None:
    sdk = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0)

    completion = sdk.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "hi sdk"}]
    )
    stream = sdk.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "hi sdk"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    tool_call = sdk.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    vectors = sdk.embeddings.create(model="sim-embed", input=["a", "b"], dimensions=8)
    live.state.faults.extend([Fault(kind="status", status=429, retry_after=1)])
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "x"}])

    text = completion.choices[0].message.content
    assert text is not None and text.startswith("Simulated answer from sim-small: hi sdk")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == completion.usage.total_tokens  # type: ignore[union-attr]
    calls = tool_call.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert tool_call.choices[0].finish_reason == "tool_calls"
    assert [len(item.embedding) for item in vectors.data] == [8, 8]
    assert sum(v * v for v in vectors.data[0].embedding) == pytest.approx(1, abs=1e-5)
    assert raised.value.response.headers["retry-after"] == "1"


def test_anthropic_sdk_messages_plain_stream_and_tool_use(live: LiveSimulator) -> None:
    sdk = anthropic.Anthropic(base_url=live.url, api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": "hi sdk"}]

    message = sdk.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=100, messages=messages
    )
    with sdk.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=100, messages=messages
    ) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    tool: Any = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with sdk.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=100, messages=messages, tools=[tool]
    ) as stream:
        tool_message = stream.get_final_message()
    live.state.faults.extend([Fault(kind="status", status=529)])
    with pytest.raises(anthropic.APIStatusError) as raised:
        sdk.messages.create(model="claude-3-5-haiku-latest", max_tokens=10, messages=messages)

    assert message.type == "message" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith(
        "Simulated answer from claude-3-5-haiku-latest: hi sdk"
    )
    assert streamed_text == message.content[0].text
    assert final.content[0].type == "text" and final.content[0].text == message.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == 2
    assert tool_message.stop_reason == "tool_use"
    block = tool_message.content[0]
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "example", "unit": "celsius", "days": 1}
    assert raised.value.status_code == 529
    assert raised.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
