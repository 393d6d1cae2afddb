"""Azure OpenAI: deployment URLs, `api-version`, api-key or Entra ID, content-filter errors.

Requests go to `{endpoint}/openai/deployments/{deployment}/{chat/completions|completions|
embeddings}?api-version=...`; a target's model is the deployment name. The endpoint is the
resource's (`https://RESOURCE.openai.azure.com`); one that already ends in
`/openai/deployments` is taken as it is. With `azure_ad` set, raygate sends Entra ID tokens
(client credentials) and no `api-key`.

Azure's content filter refuses a prompt with a 400 whose error code is `content_filter` and
whose `innererror.content_filter_result` says which categories tripped; raygate answers it
as `ContentFiltered` (403 `content_filter`, a policy error), which an alias may fall over on.
Answers the filter cut short arrive with `finish_reason: content_filter` and pass as they are.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from gateway.errors import ContentFiltered, GatewayError
from gateway.providers.config import ProviderConfig
from gateway.providers.openai_compat import OpenAICompatible

DEFAULT_API_VERSION = "2024-10-21"
_DEPLOYMENTS = "/openai/deployments"


class AzureOpenAI(OpenAICompatible):
    """An Azure OpenAI resource; each target model is one of its deployments."""

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, transport=transport)
        base = (self.preset.base_url or "").rstrip("/")
        self._prefix = "" if base.endswith(_DEPLOYMENTS) else _DEPLOYMENTS
        self._api_version = config.api_version or DEFAULT_API_VERSION

    def path(self, endpoint: str, model: str) -> str:
        """`/openai/deployments/{deployment}/{endpoint}`."""
        return f"{self._prefix}/{quote(model, safe='')}/{endpoint}"

    def query(self) -> dict[str, str]:
        """`api-version`, on every call."""
        return {"api-version": self._api_version}

    def status_error(self, status: int, text: str, headers: httpx.Headers) -> GatewayError:
        """The base mapping, except that a content-filter refusal is a policy error."""
        filtered = content_filter_error(status, text, provider=self.name)
        return filtered or super().status_error(status, text, headers)


def content_filter_error(status: int, text: str, *, provider: str) -> ContentFiltered | None:
    """`ContentFiltered` naming the tripped categories, when `text` is Azure's content-filter
    error; else None."""
    if status != 400:
        return None
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("code") != "content_filter":
        return None
    inner = error.get("innererror")
    results = inner.get("content_filter_result") if isinstance(inner, dict) else None
    tripped = [
        _category(name, result)
        for name, result in (results.items() if isinstance(results, dict) else [])
        if isinstance(result, dict) and result.get("filtered")
    ]
    what = f" ({', '.join(tripped)})" if tripped else ""
    return ContentFiltered(
        f"the content filter of upstream {provider!r} refused the prompt{what}", param="messages"
    )


def _category(name: str, result: dict[str, Any]) -> str:
    severity = result.get("severity")
    return f"{name}: {severity}" if isinstance(severity, str) else name
