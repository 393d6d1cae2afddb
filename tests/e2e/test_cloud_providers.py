"""The cloud providers through the running gateway, with the `openai` SDK as the client: AWS
Bedrock (Converse and ConverseStream, SigV4), Vertex AI's Gemini and Claude (a service
account's tokens), Azure OpenAI (Entra ID) and Cohere, each against the simulator speaking that
cloud's wire format and checking that cloud's credentials; whole, streamed and embeddings."""

from __future__ import annotations

import openai
import pytest

from tests.e2e.conftest import Gateway

BYPASS = {"x-raygate-cache-control": "bypass"}  # every call reaches its upstream


def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=gateway.api_key, max_retries=0)


@pytest.mark.parametrize(
    ("alias", "target"),
    [
        ("cloud-nova", "bedrock/amazon.nova-pro-v1:0"),
        ("cloud-gemini", "vertex/gemini-2.0-flash"),
        ("cloud-claude", "claude-vertex/claude-sonnet-4@20250514"),
        ("cloud-gpt", "azure/gpt4o-prod"),
        ("cloud-command", "cohere/command-a-03-2025"),
    ],
)
def test_each_cloud_answers_whole_and_streamed(gateway: Gateway, alias: str, target: str) -> None:
    model = target.split("/", 1)[1]
    raw = client(gateway).chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "whole"}], extra_headers=BYPASS
    )
    whole = raw.parse()
    assert raw.headers["x-raygate-route"].startswith(target)
    assert whole.model == alias
    assert (whole.choices[0].message.content or "").startswith(f"Simulated answer from {model}")
    assert whole.usage is not None and whole.usage.prompt_tokens > 0

    stream = client(gateway).chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "streamed"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=BYPASS,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"Simulated answer from {model}: streamed")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("alias", ["cloud-titan", "cloud-embed"])
def test_bedrock_and_cohere_embed(gateway: Gateway, alias: str) -> None:
    vectors = client(gateway).embeddings.create(
        model=alias, input=["first text", "second text"], extra_headers=BYPASS
    )
    assert [v.index for v in vectors.data] == [0, 1]
    assert len(vectors.data[0].embedding) > 0 and vectors.model == alias
