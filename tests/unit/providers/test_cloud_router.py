"""Each new provider end to end through the router, in process, with real adapters calling the
simulator over loopback: Bedrock (SigV4), Vertex AI Gemini and Claude (service account),
Azure OpenAI (Entra ID), Cohere; plus drop_params and content-filter fallover."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from starlette.applications import Starlette

from gateway.config import parse_config
from gateway.errors import UnsupportedParameter
from gateway.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from gateway.routing.router import Router
from tests.support.simulator import received
from tests.unit.providers.cloud_support import (
    AWS_KEY_ID,
    AWS_SECRET,
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    AZURE_TENANT,
    PROJECT,
    ServiceAccount,
    cloud_settings,
    cloud_sim,
    service_account,
)


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return service_account()


@pytest.fixture(scope="module")
def sim(account: ServiceAccount) -> Iterator[tuple[Starlette, str]]:
    with cloud_sim(cloud_settings(account, api_key="sk-sim")) as served:
        yield served


def config_text(url: str, sa_file: Path) -> str:
    return f"""
providers:
  bedrock:
    preset: bedrock
    base_url: {url}
    aws: {{region: us-east-1, access_key_id: {AWS_KEY_ID}, secret_access_key: "{AWS_SECRET}"}}
  vertex:
    preset: vertex
    base_url: {url}
    gcp: {{project: {PROJECT}, location: europe-west4, credentials_file: {sa_file}}}
  claude-vertex:
    preset: vertex-anthropic
    base_url: {url}
    gcp: {{project: {PROJECT}, location: us-east5, credentials_file: {sa_file}}}
  azure:
    preset: azure
    base_url: {url}
    azure_ad: {{tenant_id: {AZURE_TENANT}, client_id: {AZURE_CLIENT_ID},
               client_secret: {AZURE_CLIENT_SECRET}, authority_host: "{url}"}}
  cohere: {{preset: cohere, base_url: {url}, api_key: sk-sim}}
  gemini: {{preset: gemini, base_url: {url}, api_key: sk-sim}}
models:
  nova: {{targets: [bedrock/amazon.nova-pro-v1:0]}}
  titan: {{targets: [bedrock/amazon.titan-embed-text-v2:0]}}
  gemini-vertex: {{targets: [vertex/gemini-2.0-flash]}}
  claude: {{targets: [claude-vertex/claude-sonnet-4@20250514]}}
  gpt: {{targets: [azure/gpt4o-prod]}}
  command: {{targets: [cohere/command-a-03-2025]}}
  embed-v4: {{targets: [cohere/embed-v4.0]}}
  gemini-strict: {{targets: [gemini/gemini-2.0-flash]}}
  gemini-lenient: {{drop_params: [parallel_tool_calls], targets: [gemini/gemini-2.0-flash]}}
  careful:
    fallback_on: [content_filter]
    targets: [azure/gpt4o-prod, bedrock/amazon.nova-pro-v1:0]
"""


@pytest_asyncio.fixture
async def router(
    sim: tuple[Starlette, str], account: ServiceAccount, tmp_path: Path
) -> AsyncIterator[Router]:
    sa_file = account.write(tmp_path / "sa.json", f"{sim[1]}/token")
    router = Router(parse_config(config_text(sim[1], sa_file), env={}))
    yield router
    await router.aclose()


def chat(model: str, text: str = "hello", **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **fields}
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("alias", "target"),
    [
        ("nova", "bedrock/amazon.nova-pro-v1:0"),
        ("gemini-vertex", "vertex/gemini-2.0-flash"),
        ("claude", "claude-vertex/claude-sonnet-4@20250514"),
        ("gpt", "azure/gpt4o-prod"),
        ("command", "cohere/command-a-03-2025"),
    ],
)
async def test_each_cloud_answers_whole_and_streamed_through_the_router(
    router: Router, alias: str, target: str
) -> None:
    whole = await router.chat(chat(alias, "through the router"))
    assert whole.route.header() == target
    assert whole.response.model == alias  # clients see the alias, never the upstream name
    content = whole.response.choices[0].message.content or ""
    assert content.startswith(f"Simulated answer from {target.split('/', 1)[1]}")
    assert whole.response.usage is not None and whole.response.usage.prompt_tokens == 3
    stream = await router.chat_stream(chat(alias, "streamed"))
    chunks = [chunk async for chunk in stream.chunks]
    assert stream.route.target == target
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"Simulated answer from {target.split('/', 1)[1]}: streamed")
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].prompt_tokens == 1


@pytest.mark.asyncio
async def test_embeddings_through_bedrock_and_cohere(router: Router) -> None:
    titan = await router.embeddings(EmbeddingRequest(model="titan", input=["a", "b"]))
    cohere = await router.embeddings(EmbeddingRequest(model="embed-v4", input="a b c"))
    assert len(titan.response.data) == 2 and titan.response.model == "titan"
    assert cohere.response.usage.prompt_tokens == 3


@pytest.mark.asyncio
async def test_drop_params_lets_langchains_parallel_tool_calls_through_to_gemini(
    router: Router, sim: tuple[Starlette, str]
) -> None:
    request = chat("gemini-strict", parallel_tool_calls=False)
    with pytest.raises(UnsupportedParameter) as refused:
        await router.chat(request)
    assert refused.value.param == "parallel_tool_calls" and refused.value.status == 400
    lenient = await router.chat(chat("gemini-lenient", parallel_tool_calls=False))
    assert lenient.route.dropped == ["parallel_tool_calls"]
    assert lenient.response.choices[0].finish_reason == "stop"
    stream = await router.chat_stream(chat("gemini-lenient", parallel_tool_calls=False))
    await stream.aclose()
    assert stream.route.dropped == ["parallel_tool_calls"]


@pytest.mark.asyncio
async def test_azure_content_filter_falls_over_to_the_next_target(router: Router) -> None:
    routed = await router.chat(chat("careful", "about forbidden-topic"))
    assert routed.route.header() == "bedrock/amazon.nova-pro-v1:0; tried=azure/gpt4o-prod:403"
    # Bedrock's own filter refused too: the answer says so instead of pretending.
    assert routed.response.choices[0].finish_reason == "content_filter"


@pytest.mark.asyncio
async def test_signed_requests_carry_no_static_key(
    router: Router, sim: tuple[Starlette, str]
) -> None:
    await router.chat(chat("nova", "signed"))
    sent = [r for r in await received(sim[1]) if r["path"].endswith("/converse")][-1]
    assert sent["headers"]["authorization"] == "<redacted>"
    assert sent["headers"]["x-amz-date"]
