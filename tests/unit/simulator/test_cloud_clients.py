"""The simulator's cloud formats, as each cloud's official client sees them: boto3's
bedrock-runtime client, google-genai in Vertex AI mode, Anthropic's Vertex client, the openai
SDK's AzureOpenAI client and Cohere's ClientV2, each against the simulator on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import boto3
import cohere
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from google import genai
from google.genai import types
from google.oauth2 import service_account as google_sa
from starlette.applications import Starlette

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

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return service_account()


@pytest.fixture(scope="module")
def sim(account: ServiceAccount) -> Iterator[tuple[Starlette, str]]:
    with cloud_sim(cloud_settings(account, api_key="sk-sim")) as served:
        yield served


@pytest.fixture
def url(sim: tuple[Starlette, str]) -> str:
    return sim[1]


# --- Bedrock: boto3 -----------------------------------------------------------------------------


def bedrock(url: str, *, secret: str = AWS_SECRET, region: str = "us-east-1") -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_converse_gets_an_answer_with_usage(url: str) -> None:
    answer = bedrock(url).converse(
        modelId="anthropic.claude-3-5-haiku-20241022-v1:0",
        messages=[{"role": "user", "content": [{"text": "hello there"}]}],
        system=[{"text": "be brief"}],
        inferenceConfig={"maxTokens": 50},
    )
    text = answer["output"]["message"]["content"][0]["text"]
    assert text.startswith("Simulated answer from anthropic.claude-3-5-haiku-20241022-v1:0: hello")
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"]["inputTokens"] == 4  # "be brief" + "hello there"
    assert answer["usage"]["totalTokens"] == 4 + answer["usage"]["outputTokens"]


def test_boto3_converse_stream_decodes_every_event_frame(url: str) -> None:
    response = bedrock(url).converse_stream(
        modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0",
        messages=[{"role": "user", "content": [{"text": "stream it"}]}],
    )
    events = list(response["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text.startswith("Simulated answer from us.anthropic")
    assert events[-1]["metadata"]["usage"]["inputTokens"] == 2


def test_boto3_tool_use_round_trip(url: str) -> None:
    client = bedrock(url)
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER}}}]}
    first = client.converse(
        modelId="amazon.nova-lite-v1:0",
        messages=[{"role": "user", "content": [{"text": "weather in Oslo"}]}],
        toolConfig={**tools, "toolChoice": {"any": {}}},
    )
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][0]["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "example"}
    second = client.converse(
        modelId="amazon.nova-lite-v1:0",
        messages=[
            {"role": "user", "content": [{"text": "weather in Oslo"}]},
            first["output"]["message"],
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}
                ],
            },
        ],
        toolConfig=tools,
    )
    assert 'the tool returned "sunny"' in second["output"]["message"]["content"][0]["text"]


def test_boto3_invoke_model_embeds_with_titan_and_cohere(url: str) -> None:
    client = bedrock(url)
    titan = client.invoke_model(
        modelId="amazon.titan-embed-text-v2:0",
        body=json.dumps({"inputText": "hello world", "dimensions": 256}),
    )
    assert len(json.loads(titan["body"].read())["embedding"]) == 256
    cohere_answer = client.invoke_model(
        modelId="cohere.embed-english-v3",
        body=json.dumps({"texts": ["a", "b c"], "input_type": "search_query"}),
    )
    assert len(json.loads(cohere_answer["body"].read())["embeddings"]) == 2
    assert (
        cohere_answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "3"
    )


def test_boto3_with_a_wrong_secret_is_refused_as_aws_refuses_it(url: str) -> None:
    with pytest.raises(ClientError) as refused:
        bedrock(url, secret="not-the-secret").converse(
            modelId="amazon.nova-lite-v1:0",
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
        )
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_cross_region_profile_of_another_geography_is_refused(url: str) -> None:
    with pytest.raises(ClientError) as refused:
        bedrock(url, region="eu-west-1").converse(
            modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0",
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    answer = bedrock(url, region="eu-west-1").converse(
        modelId="eu.anthropic.claude-3-5-haiku-20241022-v1:0",
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
    )
    assert answer["stopReason"] == "end_turn"


def test_turns_that_do_not_alternate_are_a_validation_error(url: str) -> None:
    with pytest.raises(ClientError) as refused:
        bedrock(url).converse(
            modelId="amazon.nova-lite-v1:0",
            messages=[
                {"role": "user", "content": [{"text": "one"}]},
                {"role": "user", "content": [{"text": "two"}]},
            ],
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "alternate" in refused.value.response["Error"]["Message"]


# --- Vertex AI: google-genai and AnthropicVertex -------------------------------------------------


def google_credentials(account: ServiceAccount, tmp_path: Path, url: str) -> Any:
    path = account.write(tmp_path / "sa.json", f"{url}/token")
    return google_sa.Credentials.from_service_account_file(
        str(path), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )


def genai_client(url: str, credentials: Any) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project=PROJECT,
        location="europe-west4",
        credentials=credentials,
        http_options=types.HttpOptions(base_url=url, api_version="v1"),
    )


def test_google_genai_on_vertex_generates_streams_and_embeds(
    account: ServiceAccount, tmp_path: Path, url: str
) -> None:
    client = genai_client(url, google_credentials(account, tmp_path, url))
    answer = client.models.generate_content(model="gemini-2.0-flash", contents="hello vertex")
    assert answer.text is not None and answer.text.startswith("Simulated answer from gemini")
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count == 2
    streamed = "".join(
        chunk.text or ""
        for chunk in client.models.generate_content_stream(
            model="gemini-2.0-flash", contents="hello stream"
        )
    )
    assert streamed.startswith("Simulated answer from gemini-2.0-flash: hello stream")
    embedded = client.models.embed_content(model="text-embedding-005", contents=["a b", "c"])
    assert embedded.embeddings is not None and len(embedded.embeddings) == 2
    assert len(embedded.embeddings[0].values or []) == 8


def test_vertex_refuses_a_token_it_did_not_issue(url: str) -> None:
    from google.oauth2.credentials import Credentials

    client = genai_client(url, Credentials(token="forged-token"))
    with pytest.raises(genai.errors.ClientError) as refused:
        client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert refused.value.code == 401


def test_anthropic_vertex_client_uses_raw_predict(
    account: ServiceAccount, tmp_path: Path, sim: tuple[Starlette, str]
) -> None:
    app, url = sim
    client = anthropic.AnthropicVertex(
        project_id=PROJECT,
        region="us-east5",
        base_url=f"{url}/v1",
        credentials=google_credentials(account, tmp_path, url),
    )
    message = client.messages.create(
        model="claude-3-5-haiku@20241022",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Simulated answer from claude-3-5-haiku@20241022")
    with client.messages.stream(
        model="claude-3-5-haiku@20241022",
        max_tokens=64,
        messages=[{"role": "user", "content": "stream claude"}],
    ) as stream:
        text = "".join(stream.text_stream)
    assert text.startswith("Simulated answer from claude-3-5-haiku@20241022: stream claude")
    paths = [r["path"] for r in app.state.sim.requests if "anthropic" in r["path"]]
    assert paths[-2:] == [
        f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/"
        "claude-3-5-haiku@20241022:rawPredict",
        f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/"
        "claude-3-5-haiku@20241022:streamRawPredict",
    ]


# --- Azure OpenAI: openai.AzureOpenAI ----------------------------------------------------------


def entra_token(url: str) -> str:
    import httpx

    response = httpx.post(
        f"{url}/{AZURE_TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": AZURE_CLIENT_ID,
            "client_secret": AZURE_CLIENT_SECRET,
            "scope": "https://cognitiveservices.azure.com/.default",
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def test_azure_openai_client_with_a_key_and_with_an_entra_token(url: str) -> None:
    keyed = openai.AzureOpenAI(azure_endpoint=url, api_key="sk-sim", api_version="2024-10-21")
    answer = keyed.chat.completions.create(
        model="my-gpt4o-deployment", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert answer.choices[0].message.content is not None
    assert answer.choices[0].message.content.startswith("Simulated answer from my-gpt4o-deployment")
    entra = openai.AzureOpenAI(
        azure_endpoint=url,
        azure_ad_token_provider=lambda: entra_token(url),
        api_version="2024-10-21",
    )
    chunks = list(
        entra.chat.completions.create(
            model="my-gpt4o-deployment",
            messages=[{"role": "user", "content": "stream azure"}],
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Simulated answer from my-gpt4o-deployment: stream azure")
    vectors = keyed.embeddings.create(model="my-embedding-deployment", input=["a", "b"])
    assert [len(v.embedding) for v in vectors.data] == [8, 8]


def test_azure_refuses_a_bad_key_and_a_missing_api_version(url: str) -> None:
    wrong = openai.AzureOpenAI(azure_endpoint=url, api_key="wrong", api_version="2024-10-21")
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="d", messages=[{"role": "user", "content": "hi"}])
    import httpx

    missing = httpx.post(
        f"{url}/openai/deployments/d/chat/completions",
        headers={"api-key": "sk-sim"},
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert missing.status_code == 404


def test_azure_content_filter_error_reaches_the_client_in_azure_shape(url: str) -> None:
    client = openai.AzureOpenAI(azure_endpoint=url, api_key="sk-sim", api_version="2024-10-21")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="d", messages=[{"role": "user", "content": "tell me about forbidden-topic"}]
        )
    assert refused.value.code == "content_filter"
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["innererror"]["content_filter_result"]["violence"]["filtered"] is True


# --- Cohere: ClientV2 ---------------------------------------------------------------------------


def test_cohere_client_chats_streams_calls_tools_and_embeds(url: str) -> None:
    client = cohere.ClientV2(api_key="sk-sim", base_url=url)
    answer = client.chat(model="command-r-plus", messages=[{"role": "user", "content": "hi co"}])
    assert answer.finish_reason == "COMPLETE"
    assert answer.message.content is not None
    assert answer.message.content[0].text.startswith("Simulated answer from command-r-plus: hi co")
    assert answer.usage is not None and answer.usage.tokens is not None
    assert answer.usage.tokens.input_tokens == 2
    events = list(
        client.chat_stream(model="command-r-plus", messages=[{"role": "user", "content": "go"}])
    )
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text.startswith("Simulated answer from command-r-plus: go")
    assert events[-1].type == "message-end"
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
    called = client.chat(
        model="command-r-plus",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[tool],
        tool_choice="REQUIRED",
    )
    assert called.finish_reason == "TOOL_CALL"
    assert called.message.tool_calls is not None
    assert json.loads(called.message.tool_calls[0].function.arguments) == {"city": "example"}
    vectors = client.embed(
        model="embed-v4.0",
        texts=["a", "b"],
        input_type="search_document",
        embedding_types=["float"],
    )
    assert vectors.embeddings.float_ is not None and len(vectors.embeddings.float_) == 2


def test_cohere_embed_without_an_input_type_is_refused(url: str) -> None:
    # The SDK itself insists on input_type: ask over plain HTTP what the API says.
    import httpx

    response = httpx.post(
        f"{url}/v2/embed",
        headers={"authorization": "Bearer sk-sim"},
        json={"model": "embed-v4.0", "texts": ["a"], "embedding_types": ["float"]},
    )
    assert response.status_code == 400
    assert "input_type" in response.json()["message"]
