"""Azure OpenAI: `POST /openai/deployments/{deployment}/{chat/completions|completions|
embeddings}?api-version=...`, answered by the OpenAI handlers with the deployment as model.

Checks what Azure checks: an `api-version` (404 without one, 400 for one that is not a
date), an `api-key` (the simulator's `api_key`) or an Entra ID bearer token it issued (when
`azure_clients` is set), and the content filter (`content_filter_terms`), whose refusal is
Azure's 400 with code `content_filter` and the categories in `innererror`.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator import openai_api
from gateway.simulator.oauth import bearer
from gateway.simulator.rewrite import Handler, body_of, delegate
from gateway.simulator.state import SimulatorState, get_state
from gateway.simulator.wire import json_response

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


def _error(http_status: int, code: str, message: str, **extra: Any) -> Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, http_status)


def _deployment_route(handler: Handler, *, filtered: bool) -> Handler:
    async def endpoint(request: Request) -> Response:
        state = get_state(request)
        version = request.query_params.get("api-version")
        if version is None:
            return _error(404, "404", "Resource not found")
        if not _API_VERSION.match(version):
            return _error(400, "BadRequest", "API version not supported")
        if (denied := _deny(request, state)) is not None:
            return denied
        body = await body_of(request)
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "The request body is not valid JSON.")
        if filtered and _tripped(body, state.settings.content_filter_terms):
            state.record(request, body)
            return _content_filtered()
        body["model"] = request.path_params["deployment"]
        # The OpenAI handler checks its own bearer key: hand it the one it expects.
        key = state.settings.api_key
        return await delegate(
            request, handler, body, headers={"authorization": f"Bearer {key}"} if key else None
        )

    return endpoint


def _deny(request: Request, state: SimulatorState) -> Response | None:
    settings = state.settings
    if settings.api_key is None and not settings.azure_clients:
        return None  # nothing configured: every caller is served
    key = request.headers.get("api-key")
    if key is not None and settings.api_key is not None and key == settings.api_key:
        return None
    token = bearer(request)
    if token is not None and settings.azure_clients and state.tokens.valid(token, "azure"):
        return None
    return _error(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    )


def _tripped(body: dict[str, Any], terms: list[str]) -> bool:
    text = repr(body.get("messages", body.get("prompt", ""))).lower()
    return any(term.lower() in text for term in terms)


def _content_filtered() -> Response:
    safe = {"filtered": False, "severity": "safe"}
    result = {
        "hate": safe,
        "jailbreak": {"filtered": False, "detected": False},
        "self_harm": safe,
        "sexual": safe,
        "violence": {"filtered": True, "severity": "medium"},
    }
    return _error(
        400,
        "content_filter",
        _FILTER_MESSAGE,
        param="prompt",
        type=None,
        status=400,
        innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
    )


_PREFIX = "/openai/deployments/{deployment}"
routes = [
    Route(
        f"{_PREFIX}/chat/completions",
        _deployment_route(openai_api.chat_completions, filtered=True),
        methods=["POST"],
    ),
    Route(
        f"{_PREFIX}/completions",
        _deployment_route(openai_api.completions, filtered=True),
        methods=["POST"],
    ),
    Route(
        f"{_PREFIX}/embeddings",
        _deployment_route(openai_api.embeddings, filtered=False),
        methods=["POST"],
    ),
]
