"""Google Vertex AI: Gemini models and Anthropic's Claude, with Google Cloud credentials.

Both live under `/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/
{model}:{method}` on the location's endpoint (`{location}-aiplatform.googleapis.com`, or
`aiplatform.googleapis.com` for `global`) and take OAuth bearer tokens from a service account
or Application Default Credentials (`gcp_auth.py`), refreshed before they expire and once more
on a 401.

* Gemini (`vertex`): the Gemini API's own `generateContent` / `streamGenerateContent?alt=sse`
  bodies (`gemini.py`); embeddings through the text-embedding models' `predict`.
* Claude (`vertex-anthropic`): Anthropic's Messages body (`anthropic.py`) without `model`
  and with `anthropic_version: vertex-2023-10-16`, to `rawPredict` / `streamRawPredict`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from gateway.errors import UpstreamError
from gateway.protocol.openai import EmbeddingRequest, EmbeddingResponse
from gateway.protocol.vertex_embeddings import embedding_request_to_vertex, vertex_to_embeddings
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.config import GcpSettings, ProviderConfig
from gateway.providers.gcp_auth import GoogleCredentialsAuth
from gateway.providers.gemini import GeminiProvider

ANTHROPIC_VERSION = "vertex-2023-10-16"


def _settings(config: ProviderConfig) -> GcpSettings:
    if config.gcp is None or config.gcp.project is None:
        raise ValueError("a Vertex AI provider needs gcp.project")
    return config.gcp


def model_path(settings: GcpSettings, publisher: str, model: str, method: str) -> str:
    """The path of `method` on a publisher model in the provider's project and location."""
    return (
        f"/v1/projects/{quote(settings.project or '', safe='')}/locations/"
        f"{quote(settings.location, safe='')}/publishers/{publisher}/models/"
        f"{quote(model, safe='')}:{method}"
    )


class VertexGemini(GeminiProvider):
    """Gemini models on Vertex AI."""

    def request_auth(self) -> httpx.Auth | None:
        """Google OAuth tokens for the configured account."""
        return GoogleCredentialsAuth(_settings(self.config), name=self.name)

    def _path(self, model: str, action: str) -> str:
        return model_path(_settings(self.config), "google", model, action)

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        request = self.conform(request).request
        body = embedding_request_to_vertex(request)
        data = await self.post_json(self._path(request.model, "predict"), body)
        try:
            return vertex_to_embeddings(data, request=request)
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None


class VertexAnthropic(AnthropicProvider):
    """Anthropic's Claude models on Vertex AI."""

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, transport=transport)
        # The version travels in the body on Vertex AI.
        self._client.headers.pop("anthropic-version", None)
        self._version = config.api_version or ANTHROPIC_VERSION

    def request_auth(self) -> httpx.Auth | None:
        """Google OAuth tokens for the configured account."""
        return GoogleCredentialsAuth(_settings(self.config), name=self.name)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """None: the bearer token is the credential."""
        return {}

    def messages_call(self, body: dict[str, Any], *, stream: bool) -> tuple[str, dict[str, Any]]:
        """`rawPredict` (or `streamRawPredict`) on the model, which leaves the body."""
        body = dict(body)
        model = body.pop("model")
        body["anthropic_version"] = self._version
        method = "streamRawPredict" if stream else "rawPredict"
        return model_path(_settings(self.config), "anthropic", model, method), body
