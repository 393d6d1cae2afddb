"""The official `openai` SDK's Responses API (`client.responses`) against the running gateway
(`raygate up`), and a tiny `openai-agents` agent with one function tool through it.

The `simulator` provider has the Responses API (its preset's `responses_api`), so the gateway
calls its `POST /v1/responses` natively, with the whole conversation and `store: false`;
`simulator-chat` is the same server with the flag cleared (translated to chat)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.e2e.conftest import Gateway

CARD = "4111 1111 1111 1111"
TOOL: Any = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=gateway.api_key, max_retries=0)


def _user_client(gateway: Gateway, *groups: str) -> openai.OpenAI:
    """A client for a fresh user (an issued key)."""
    args = [arg for group in groups for arg in ("--group", group)]
    user = f"responses-{uuid.uuid4().hex[:8]}"
    issued = gateway.cli("keys", "issue", "--user", user, *args)
    assert issued.returncode == 0, issued.stderr
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    return openai.OpenAI(base_url=gateway.v1, api_key=found.group(1), max_retries=0)


def _sent(gateway: Gateway) -> list[dict[str, Any]]:
    """The input items of the last request the simulator received, which must have been a
    native Responses API call that left nothing stored upstream."""
    requests = [r for r in gateway.upstream_requests() if r.get("json")]
    last: Any = requests[-1]
    assert last["path"] == "/v1/responses", last["path"]
    assert last["json"]["store"] is False and "previous_response_id" not in last["json"]
    return list(last["json"]["input"])


def test_create_answers_a_response_with_instructions_as_the_system_message(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    response = client.responses.create(
        model="sim-small", input="Name a French city", instructions="Be brief."
    )
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == "sim-small"
    assert "Name a French city" in response.output_text
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert _sent(gateway)[0] == {"type": "message", "role": "system", "content": "Be brief."}


def test_a_stream_is_the_typed_event_sequence_ending_with_completed(
    client: openai.OpenAI,
) -> None:
    with client.responses.create(model="sim-small", input="Stream a reply", stream=True) as s:
        events = list(s)
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "Stream a reply" in text
    assert events[-1].response.output_text == text  # type: ignore[union-attr]


def test_the_sdks_stream_helper_assembles_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="sim-small", input="Stream with the helper") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.status == "completed" and "Stream with the helper" in final.output_text


def test_previous_response_id_continues_the_conversation_upstream(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    first = client.responses.create(model="sim-small", input="My name is Ana")
    second = client.responses.create(
        model="sim-small", input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert _sent(gateway) == [
        {"type": "message", "role": "user", "content": "My name is Ana"},
        {"type": "message", "role": "assistant", "content": first.output_text},
        {"type": "message", "role": "user", "content": "What is my name?"},
    ]


def test_a_function_tool_round_trip(client: openai.OpenAI, gateway: Gateway) -> None:
    first = client.responses.create(
        model="sim-small", input="What does 'gateway' mean?", tools=[TOOL]
    )
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup"
    assert "word" in call.arguments and call.call_id
    second = client.responses.create(
        model="sim-small",
        previous_response_id=first.id,
        tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a way"}],
    )
    assert 'the tool returned "a way"' in second.output_text
    assert _sent(gateway)[-2:] == [
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": "lookup",
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "a way"},
    ]


def test_retrieve_and_delete(client: openai.OpenAI, gateway: Gateway) -> None:
    created = client.responses.create(model="sim-small", input="keep this")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    items = client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    raw = client.responses.with_raw_response.delete(created.id)
    assert raw.http_response.json() == {
        "id": created.id,
        "object": "response.deleted",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_another_users_response_is_a_404(gateway: Gateway) -> None:
    ana, bo = _user_client(gateway), _user_client(gateway)
    mine = ana.responses.create(model="sim-small", input="private notes")
    with pytest.raises(openai.NotFoundError) as theirs:
        bo.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError) as missing:
        bo.responses.retrieve("resp_" + uuid.uuid4().hex)
    assert theirs.value.code == missing.value.code == "not_found"
    assert theirs.value.body["message"] == f"Response with id '{mine.id}' not found."  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        bo.responses.create(model="sim-small", input="go on", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        bo.responses.delete(mine.id)
    assert ana.responses.retrieve(mine.id).id == mine.id


def test_a_blocked_input_is_a_policy_violation_and_nothing_goes_upstream(
    gateway: Gateway,
) -> None:
    contractor = _user_client(gateway, "contractors")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        contractor.responses.create(model="sim-small", input=f"Charge {CARD} for the order")
    assert caught.value.code == "policy_violation"
    assert "pii.CREDIT_CARD" in caught.value.message
    assert gateway.upstream_requests() == []


def test_a_repeated_request_is_answered_from_the_cache(gateway: Gateway) -> None:
    client = _user_client(gateway)  # the cache is isolated per user
    ask = {"model": "cached-small", "input": "How do I rotate an SSH host key?"}
    first = client.responses.with_raw_response.create(**ask)
    assert first.headers["x-raygate-cache"] == "miss"
    again = client.responses.with_raw_response.create(**ask)
    assert again.headers["x-raygate-cache"] == "exact"
    assert again.parse().output_text == first.parse().output_text
    assert again.parse().id != first.parse().id  # a new response, from the cached answer


def test_a_built_in_tool_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="sim-small", input="hi", tools=[{"type": "web_search"}])
    assert refused.value.param == "tools[0].type"


def test_a_stream_cut_upstream_ends_with_error_and_response_failed(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    gateway.inject(kind="cut", after_chunks=3, count=1)
    with client.responses.create(model="sim-small", input="cut me", stream=True) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds


@pytest.mark.parametrize("stream", [False, True])
def test_a_native_target_falls_over_to_a_translated_one(
    client: openai.OpenAI, gateway: Gateway, stream: bool
) -> None:
    gateway.inject(
        kind="status",
        status=503,
        match_path="/v1/responses",
        match_model="sim-native-first",
        count=1,
    )
    raw = client.responses.with_raw_response.create(
        model="sim-mixed", input="Fall over", stream=stream
    )
    if stream:
        with raw.parse() as events:
            last = list(events)[-1]
        assert last.type == "response.completed"
        text = last.response.output_text
    else:
        text = raw.parse().output_text
    assert text.startswith("Simulated answer from sim-chat-second: Fall over")
    assert raw.headers["x-raygate-route"] == (
        "simulator-chat/sim-chat-second; tried=simulator/sim-native-first:503"
    )
    calls = [(r["path"], r["json"]["model"]) for r in gateway.upstream_requests() if r.get("json")]  # type: ignore[index]
    assert calls[0] == ("/v1/responses", "sim-native-first")
    assert calls[-1] == ("/v1/chat/completions", "sim-chat-second")


def test_an_openai_agents_agent_calls_its_function_tool_through_the_gateway(
    gateway: Gateway,
) -> None:
    set_tracing_disabled(True)  # nothing leaves the machine
    asked: list[str] = []

    @function_tool
    def lookup(word: str) -> str:
        """Look a word up in the dictionary."""
        asked.append(word)
        return f"{word} means a way through"

    client = openai.AsyncOpenAI(base_url=gateway.v1, api_key=gateway.api_key, max_retries=0)
    agent = Agent(
        name="lexicon",
        instructions="Use the lookup tool.",
        tools=[lookup],
        model=OpenAIResponsesModel(model="sim-small", openai_client=client),
    )
    result = Runner.run_sync(agent, "What does 'gateway' mean?")
    assert len(asked) == 1
    assert f'the tool returned "{asked[0]} means a way through"' in result.final_output
    sent = _sent(gateway)
    assert sent[0] == {"type": "message", "role": "system", "content": "Use the lookup tool."}
    assert sent[-1]["type"] == "function_call_output"
