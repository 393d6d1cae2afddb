"""`/v1/responses` through the whole app in process, with the official `openai` SDK: the
chat pipeline's stages apply (policy, audit, metering), stored responses are their owner's
alone, and conversations continue with `previous_response_id`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import pytest_asyncio
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.support.gateway import ADMIN_KEY, InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev, key_secret: "0123456789abcdef0123456789abcdef"}}
storage: {{url: "sqlite:///{db}"}}
audit: {{prompt: {prompt}, response: full}}
cache: {{enabled: false}}
policy:
  profiles:
    default: {{pii: {{CREDIT_CARD: block}}}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1", responses_api: false}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""
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


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    config = CONFIG.format(db=tmp_path / "gw.db", prompt="full")
    async with in_process_gateway(config) as gw:
        yield gw


def sdk(gateway: InProcessGateway, api_key: str = "sk-dev") -> openai.AsyncOpenAI:
    # The SDK brings its own HTTP client package (httpx2), over the same app.
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway.app), base_url="http://gw")
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key=api_key, http_client=http, max_retries=0
    )


async def key_for(gateway: InProcessGateway, user: str) -> str:
    issued = await gateway.post(
        "/admin/keys", {"user": user}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["secret"])


@pytest.mark.asyncio
async def test_a_response_is_answered_metered_and_audited_like_chat(
    gateway: InProcessGateway,
) -> None:
    response = await sdk(gateway).responses.create(
        model="sim-small", input="Name a French city", instructions="Be brief."
    )
    assert response.id.startswith("resp_") and response.status == "completed"
    assert "Name a French city" in response.output_text
    assert response.usage is not None and response.usage.total_tokens > 0
    sent = (await gateway.sim.bodies())[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    record = next(r for r in await gateway.records() if r["route"] == "/v1/responses")
    assert record["status"] == 200 and record["model_requested"] == "sim-small"
    assert record["tokens_out"] == response.usage.output_tokens
    assert "Name a French city" in record["prompt"]
    assert record["response"] == response.output_text


@pytest.mark.asyncio
async def test_the_stream_arrives_as_typed_events_ending_with_completed(
    gateway: InProcessGateway,
) -> None:
    stream = await sdk(gateway).responses.create(model="sim-small", input="Stream it", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    stored = await sdk(gateway).responses.retrieve(events[-1].response.id)  # type: ignore[union-attr]
    assert stored.output_text == deltas


@pytest.mark.asyncio
async def test_previous_response_id_sends_the_whole_conversation(
    gateway: InProcessGateway,
) -> None:
    client = sdk(gateway)
    first = await client.responses.create(model="sim-small", input="My name is Ana")
    second = await client.responses.create(
        model="sim-small", input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    sent = (await gateway.sim.bodies())[-1]["messages"]
    assert sent == [
        {"role": "user", "content": "My name is Ana"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]
    items = await client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["message"]


@pytest.mark.asyncio
async def test_a_function_tool_round_trip(gateway: InProcessGateway) -> None:
    client = sdk(gateway)
    first = await client.responses.create(
        model="sim-small", input="What does 'gateway' mean?", tools=[TOOL]
    )
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup"
    assert "word" in call.arguments
    second = await client.responses.create(
        model="sim-small",
        previous_response_id=first.id,
        tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a way"}],
    )
    assert 'the tool returned "a way"' in second.output_text
    sent = (await gateway.sim.bodies())[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "a way"}


@pytest.mark.asyncio
async def test_another_users_response_is_a_404_like_a_missing_one(
    gateway: InProcessGateway,
) -> None:
    ana = sdk(gateway, await key_for(gateway, "ana"))
    bo = sdk(gateway, await key_for(gateway, "bo"))
    mine = await ana.responses.create(model="sim-small", input="private notes")
    for attempt in (
        bo.responses.retrieve(mine.id),
        bo.responses.delete(mine.id),
        bo.responses.create(model="sim-small", input="more", previous_response_id=mine.id),
        bo.responses.retrieve("resp_does_not_exist"),
    ):
        with pytest.raises(openai.NotFoundError) as missing:
            await attempt
        assert "not found" in missing.value.message
    assert (await ana.responses.retrieve(mine.id)).id == mine.id


@pytest.mark.asyncio
async def test_delete_answers_the_deleted_shape_and_the_response_is_gone(
    gateway: InProcessGateway,
) -> None:
    client = sdk(gateway)
    created = await client.responses.create(model="sim-small", input="forget me")
    deleted = await gateway.http.delete(
        f"/v1/responses/{created.id}", headers={"authorization": "Bearer sk-dev"}
    )
    assert deleted.json() == {"id": created.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


@pytest.mark.asyncio
async def test_store_false_keeps_nothing(gateway: InProcessGateway) -> None:
    client = sdk(gateway)
    created = await client.responses.create(model="sim-small", input="ephemeral", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


@pytest.mark.asyncio
async def test_a_blocked_input_is_refused_and_nothing_goes_upstream(
    gateway: InProcessGateway,
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await sdk(gateway).responses.create(model="sim-small", input="Charge 4111 1111 1111 1111")
    assert refused.value.code == "policy_violation"
    assert await gateway.sim.bodies() == []


@pytest.mark.asyncio
async def test_a_built_in_tool_is_a_400_naming_it(gateway: InProcessGateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(gateway).responses.create(
            model="sim-small", input="hi", tools=[{"type": "web_search"}]
        )
    assert refused.value.param == "tools[0].type" and "web_search" in refused.value.message
    assert await gateway.sim.bodies() == []


@pytest.mark.asyncio
async def test_unknown_model_and_anonymous_callers_are_refused(gateway: InProcessGateway) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway).responses.create(model="nope", input="hi")
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, "sk-wrong").responses.create(model="sim-small", input="hi")


@pytest.mark.asyncio
async def test_when_prompts_may_not_be_kept_store_true_is_refused(tmp_path: Path) -> None:
    config = CONFIG.format(db=tmp_path / "gw.db", prompt="none")
    async with in_process_gateway(config) as gw:
        client = sdk(gw)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="sim-small", input="hi", store=True)
        assert refused.value.param == "store"
        unstored = await client.responses.create(model="sim-small", input="hi")
        assert unstored.store is False
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(unstored.id)


@pytest.mark.asyncio
async def test_input_items_are_listed_newest_first_in_pages(gateway: InProcessGateway) -> None:
    created = await sdk(gateway).responses.create(
        model="sim-small",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "un"},
            {"role": "user", "content": "two"},
        ],
    )
    auth = {"authorization": "Bearer sk-dev"}
    path = f"/v1/responses/{created.id}/input_items"
    page = (await gateway.http.get(path, params={"limit": 2}, headers=auth)).json()
    texts = [item["content"] for item in page["data"]]
    assert texts == ["two", "un"] and page["has_more"] is True
    rest = (
        await gateway.http.get(path, params={"limit": 2, "after": page["last_id"]}, headers=auth)
    ).json()
    assert [item["content"] for item in rest["data"]] == ["one", "Answer in French."]
    assert rest["has_more"] is False
    oldest = (await gateway.http.get(path, params={"order": "asc"}, headers=auth)).json()
    assert oldest["data"][0]["role"] == "developer"
    assert all(item["id"].startswith("msg_") for item in oldest["data"])


@pytest.mark.asyncio
async def test_an_unknown_parameter_is_a_400_naming_it(gateway: InProcessGateway) -> None:
    response = await gateway.post(
        "/v1/responses",
        {"model": "sim-small", "input": "hi", "prompt": {"id": "pmpt_1"}},
        headers={"authorization": "Bearer sk-dev"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"
    assert await gateway.sim.bodies() == []


@pytest.mark.asyncio
async def test_an_openai_agents_agent_streams_its_tool_loop_through_the_gateway(
    gateway: InProcessGateway,
) -> None:
    set_tracing_disabled(True)  # nothing leaves the process
    asked: list[str] = []

    @function_tool
    def lookup(word: str) -> str:
        """Look a word up in the dictionary."""
        asked.append(word)
        return f"{word} means a way through"

    agent = Agent(
        name="lexicon",
        instructions="Use the lookup tool.",
        tools=[lookup],
        model=OpenAIResponsesModel(model="sim-small", openai_client=sdk(gateway)),
    )
    run = Runner.run_streamed(agent, "What does 'bridge' mean?")
    kinds = [event.type async for event in run.stream_events()]
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert len(asked) == 1
    assert f'the tool returned "{asked[0]} means a way through"' in str(run.final_output)
    records = [r for r in await gateway.records() if r["route"] == "/v1/responses"]
    assert len(records) == 2  # the tool call turn and the answer turn, each audited
