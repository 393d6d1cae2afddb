"""The Vertex AI, Azure OpenAI and Cohere adapters against the simulator on loopback, with
the clouds' own credentials: Google service-account tokens (refreshed), Entra ID client
credentials, and the translations each needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import ContentFiltered, InvalidRequest, UpstreamRejected
from gateway.protocol.cohere import chat_request_to_cohere, cohere_to_chat
from gateway.protocol.cohere_stream import CohereStreamTranslator
from gateway.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from gateway.providers.azure import AzureOpenAI
from gateway.providers.base import Provider
from gateway.providers.config import ProviderConfig
from gateway.providers.registry import build_provider
from gateway.providers.vertex import VertexAnthropic, VertexGemini
from gateway.routing.config import HealthCheck
from gateway.routing.health import HttpHealthProbe
from tests.support.simulator import collect, control, received, serve, streamed_text
from tests.unit.providers.cloud_support import (
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    AZURE_TENANT,
    PROJECT,
    ServiceAccount,
    cloud_settings,
    cloud_sim,
    service_account,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat(model: str, text: str, **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **fields}
    )


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return service_account()


@pytest.fixture(scope="module")
def sim(account: ServiceAccount) -> Iterator[tuple[Starlette, str]]:
    with cloud_sim(cloud_settings(account, api_key="sk-sim")) as served:
        yield served


def provider(config: dict[str, Any]) -> Provider:
    return build_provider("p", ProviderConfig.model_validate(config))


def vertex(url: str, sa_file: Path, preset: str = "vertex", location: str = "us-east5") -> Provider:
    gcp = {"project": PROJECT, "location": location, "credentials_file": str(sa_file)}
    return provider({"preset": preset, "base_url": url, "gcp": gcp})


@pytest.fixture
def sa_file(account: ServiceAccount, sim: tuple[Starlette, str], tmp_path: Path) -> Path:
    return account.write(tmp_path / "sa.json", f"{sim[1]}/token")


# --- Vertex AI ----------------------------------------------------------------------------------


def test_vertex_urls_follow_the_location() -> None:
    def url(location: str) -> str | None:
        config = ProviderConfig.model_validate(
            {"preset": "vertex", "gcp": {"project": "p", "location": location}}
        )
        return config.resolved_preset.base_url

    assert url("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"
    assert url("global") == "https://aiplatform.googleapis.com"
    assert url("eu") == "https://aiplatform.eu.rep.googleapis.com"
    unset = ProviderConfig(preset="vertex")
    assert unset.disabled_reason() == "gcp.project (or GOOGLE_CLOUD_PROJECT) is not set"


@pytest.mark.asyncio
async def test_gemini_on_vertex_with_a_service_account(
    sim: tuple[Starlette, str], sa_file: Path
) -> None:
    adapter = vertex(sim[1], sa_file)
    assert isinstance(adapter, VertexGemini)
    answer = await adapter.chat(chat("gemini-2.0-flash", "hello vertex"))
    chunks = await collect(adapter.chat_stream(chat("gemini-2.0-flash", "stream vertex")))
    vectors = await adapter.embeddings(
        EmbeddingRequest(model="text-embedding-005", input=["a b", "c"], dimensions=4)
    )
    await adapter.aclose()
    assert answer.choices[0].message.content is not None
    assert answer.choices[0].message.content.startswith("Simulated answer from gemini-2.0-flash")
    assert streamed_text(chunks).startswith("Simulated answer from gemini-2.0-flash: stream")
    assert [len(d.embedding) for d in vectors.data] == [4, 4]
    assert vectors.usage.prompt_tokens == 3
    paths = [r["path"] for r in await received(sim[1])]
    assert (
        f"/v1/projects/{PROJECT}/locations/us-east5/publishers/google/models/"
        "gemini-2.0-flash:generateContent"
    ) in paths


@pytest.mark.asyncio
async def test_claude_on_vertex_uses_raw_predict(sim: tuple[Starlette, str], sa_file: Path) -> None:
    adapter = vertex(sim[1], sa_file, preset="vertex-anthropic")
    assert isinstance(adapter, VertexAnthropic)
    answer = await adapter.chat(chat("claude-3-5-haiku@20241022", "hello claude"))
    chunks = await collect(adapter.chat_stream(chat("claude-3-5-haiku@20241022", "stream")))
    await adapter.aclose()
    assert answer.choices[0].message.content is not None
    assert answer.choices[0].message.content.startswith("Simulated answer from claude-3-5-haiku")
    assert streamed_text(chunks).startswith("Simulated answer from claude-3-5-haiku@20241022")
    raw = [r for r in await received(sim[1]) if r["path"].endswith(":rawPredict")][-1]
    assert raw["json"]["anthropic_version"] == "vertex-2023-10-16"


@pytest.mark.asyncio
async def test_tokens_are_reused_then_refreshed_after_a_revocation(
    sim: tuple[Starlette, str], sa_file: Path
) -> None:
    adapter = vertex(sim[1], sa_file)
    issued = (await control(sim[1], "GET", "/_sim/tokens"))["issued"].get("google", 0)
    await adapter.chat(chat("gemini-2.0-flash", "one"))
    await adapter.chat(chat("gemini-2.0-flash", "two"))
    after_two = (await control(sim[1], "GET", "/_sim/tokens"))["issued"]["google"]
    await control(sim[1], "DELETE", "/_sim/tokens")  # the token dies early: the next call 401s
    answer = await adapter.chat(chat("gemini-2.0-flash", "three"))
    after_three = (await control(sim[1], "GET", "/_sim/tokens"))["issued"]["google"]
    await adapter.aclose()
    assert after_two == issued + 1  # one token for both calls
    assert after_three == issued + 2  # refreshed once, and the call still answered
    assert answer.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_a_token_near_its_expiry_is_refreshed_before_use(
    account: ServiceAccount, tmp_path: Path
) -> None:
    # Tokens that live 60 s are inside the refresh margin: every call gets a fresh one.
    with cloud_sim(cloud_settings(account, oauth_token_ttl_s=60)) as (_, url):
        adapter = vertex(url, account.write(tmp_path / "sa.json", f"{url}/token"))
        await adapter.chat(chat("gemini-2.0-flash", "one"))
        await adapter.chat(chat("gemini-2.0-flash", "two"))
        await adapter.aclose()
        assert (await control(url, "GET", "/_sim/tokens"))["issued"]["google"] == 2


@pytest.mark.asyncio
async def test_an_unknown_service_account_is_a_rejection(
    sim: tuple[Starlette, str], tmp_path: Path
) -> None:
    stranger = service_account("stranger@elsewhere.iam.gserviceaccount.com")
    adapter = vertex(sim[1], stranger.write(tmp_path / "sa.json", f"{sim[1]}/token"))
    with pytest.raises(UpstreamRejected, match="Google refused the credentials"):
        await adapter.chat(chat("gemini-2.0-flash", "hi"))
    await adapter.aclose()


# --- Azure OpenAI -------------------------------------------------------------------------------


def azure(url: str, **extra: Any) -> Provider:
    return provider({"preset": "azure", "base_url": url, "api_version": "2024-10-21", **extra})


@pytest.mark.asyncio
async def test_azure_with_a_key_calls_the_deployment_url(sim: tuple[Starlette, str]) -> None:
    adapter = azure(sim[1], api_key="sk-sim")
    assert isinstance(adapter, AzureOpenAI)
    answer = await adapter.chat(chat("gpt4o-prod", "hello"))
    vectors = await adapter.embeddings(EmbeddingRequest(model="embed-prod", input="x"))
    await adapter.aclose()
    assert answer.choices[0].message.content is not None
    assert answer.choices[0].message.content.startswith("Simulated answer from gpt4o-prod")
    assert len(vectors.data[0].embedding) == 8
    sent = [r for r in await received(sim[1]) if "gpt4o-prod" in r["path"]][-1]
    assert sent["path"] == "/openai/deployments/gpt4o-prod/chat/completions"


@pytest.mark.asyncio
async def test_azure_with_entra_id_sends_tokens_and_no_key(sim: tuple[Starlette, str]) -> None:
    adapter = azure(
        sim[1],
        azure_ad={
            "tenant_id": AZURE_TENANT,
            "client_id": AZURE_CLIENT_ID,
            "client_secret": AZURE_CLIENT_SECRET,
            "authority_host": sim[1],
        },
    )
    chunks = await collect(adapter.chat_stream(chat("gpt4o-prod", "stream entra")))
    await adapter.aclose()
    assert streamed_text(chunks).startswith("Simulated answer from gpt4o-prod: stream entra")
    sent = [r for r in await received(sim[1]) if "gpt4o-prod" in r["path"]][-1]
    assert "api-key" not in sent["headers"]


@pytest.mark.asyncio
async def test_a_wrong_entra_secret_is_a_rejection_naming_entra(sim: tuple[Starlette, str]) -> None:
    adapter = azure(
        sim[1],
        azure_ad={
            "tenant_id": AZURE_TENANT,
            "client_id": AZURE_CLIENT_ID,
            "client_secret": "wrong",
            "authority_host": sim[1],
        },
    )
    with pytest.raises(UpstreamRejected, match="AADSTS7000215"):
        await adapter.chat(chat("gpt4o-prod", "hi"))
    await adapter.aclose()


@pytest.mark.asyncio
async def test_azure_content_filter_is_a_policy_error(sim: tuple[Starlette, str]) -> None:
    adapter = azure(sim[1], api_key="sk-sim")
    with pytest.raises(ContentFiltered) as filtered:
        await adapter.chat(chat("gpt4o-prod", "tell me about forbidden-topic"))
    await adapter.aclose()
    assert filtered.value.status == 403 and filtered.value.code == "content_filter"
    assert "violence: medium" in filtered.value.message


def test_old_style_base_urls_ending_in_deployments_still_work() -> None:
    adapter = azure("https://r.openai.azure.com/openai/deployments", api_key="k")
    assert isinstance(adapter, AzureOpenAI)
    assert adapter.path("chat/completions", "d") == "/d/chat/completions"


# --- Cohere -------------------------------------------------------------------------------------


def test_cohere_request_translation() -> None:
    body = chat_request_to_cohere(
        ChatCompletionRequest.model_validate(
            {
                "model": "command-r",
                "messages": [
                    {"role": "developer", "content": "be brief"},
                    {"role": "user", "content": "weather?"},
                ],
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "top_p": 0.5,
                "stop": "END",
                "response_format": {"type": "json_object"},
            }
        )
    )
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["tool_choice"] == "REQUIRED" and body["p"] == 0.5
    assert body["stop_sequences"] == ["END"]
    assert body["response_format"] == {"type": "json_object"}


def test_cohere_answers_and_stream_events_translate() -> None:
    answer = cohere_to_chat(
        {
            "id": "x",
            "finish_reason": "TOOL_CALL",
            "message": {
                "role": "assistant",
                "tool_plan": "I will look.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            "usage": {"tokens": {"input_tokens": 3, "output_tokens": 4}},
        },
        model="command-r",
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    assert (choice.message.model_extra or {})["reasoning_content"] == "I will look."
    translator = CohereStreamTranslator(model="command-r")
    chunks = [
        c
        for event in (
            {"type": "message-start", "id": "m1"},
            {
                "type": "content-delta",
                "index": 0,
                "delta": {"message": {"content": {"text": "hi"}}},
            },
            {
                "type": "message-end",
                "delta": {"finish_reason": "MAX_TOKENS", "usage": {"tokens": {"input_tokens": 1}}},
            },
        )
        for c in translator.feed(event)
    ]
    assert streamed_text(chunks) == "hi" and translator.finished
    assert chunks[-2].choices[0].finish_reason == "length"


@pytest.mark.asyncio
async def test_cohere_chat_stream_tools_and_embeddings(sim: tuple[Starlette, str]) -> None:
    adapter = provider({"preset": "cohere", "base_url": sim[1], "api_key": "sk-sim"})
    answer = await adapter.chat(chat("command-r", "hello cohere"))
    chunks = await collect(adapter.chat_stream(chat("command-r", "stream cohere")))
    tools = await collect(
        adapter.chat_stream(
            chat("command-r", "weather?", tools=[WEATHER_TOOL], tool_choice="required")
        )
    )
    vectors = await adapter.embeddings(EmbeddingRequest(model="embed-v4.0", input=["a", "b c"]))
    await adapter.aclose()
    assert answer.usage is not None and answer.usage.prompt_tokens == 2
    assert streamed_text(chunks).startswith("Simulated answer from command-r: stream cohere")
    calls = [d for c in tools if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "example"}
    assert vectors.usage.prompt_tokens == 3 and len(vectors.data) == 2
    embed = [r for r in await received(sim[1]) if r["path"] == "/v2/embed"][-1]
    assert embed["json"]["input_type"] == "search_document"


@pytest.mark.asyncio
async def test_cohere_penalties_outside_its_range_are_refused() -> None:
    with pytest.raises(Exception) as refused:
        chat_request_to_cohere(chat("command-r", "hi", presence_penalty=-1.0))
    assert refused.value.__class__.__name__ == "UnsupportedParameter"
    with pytest.raises(InvalidRequest):
        chat_request_to_cohere(
            chat(
                "command-r",
                "hi",
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "nope"}},
            )
        )


@pytest.mark.asyncio
async def test_a_health_check_carries_the_clouds_token_not_just_static_headers(
    sim: tuple[Starlette, str], sa_file: Path
) -> None:
    seen: list[str] = []

    async def health(request: Request) -> Response:
        seen.append(request.headers.get("authorization", ""))
        return Response("ok")

    adapter = vertex(sim[1], sa_file)
    probe = HttpHealthProbe()
    try:
        with serve(Starlette(routes=[Route("/health", health)])) as checked:
            assert await probe(adapter, HealthCheck(path=f"{checked}/health"))
    finally:
        await probe.aclose()
        await adapter.aclose()
    assert len(seen) == 1 and seen[0].startswith("Bearer ") and len(seen[0]) > len("Bearer ")
