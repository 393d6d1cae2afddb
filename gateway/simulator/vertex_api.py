"""Google Vertex AI: `POST /{v1|v1beta1}/projects/{project}/locations/{location}/publishers/
{publisher}/models/{model}:{method}`.

`google` models answer `generateContent`, `streamGenerateContent` and `countTokens` with the
Gemini handlers, and `predict` as a text-embedding model; `anthropic` models answer
`rawPredict` / `streamRawPredict` with the Anthropic handler (the body must carry an
`anthropic_version` and no `model`, as on Vertex AI). With `gcp_service_accounts` set, a
request needs an OAuth token the simulator's `/token` issued and has not revoked or let expire.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator import anthropic_api, gemini_api
from gateway.simulator.content import count_tokens, embed
from gateway.simulator.oauth import bearer
from gateway.simulator.rewrite import body_of, delegate
from gateway.simulator.state import SimulatorState, get_state
from gateway.simulator.wire import before_first_byte, json_response


async def publisher_model(request: Request) -> Response:
    """Dispatch on the publisher and the method after the model's `:`."""
    state = get_state(request)
    if request.path_params["version"] not in ("v1", "v1beta1"):
        return gemini_api.error_response(404, "Not found: API version")
    if (denied := _deny(request, state)) is not None:
        state.record(request, None)
        return denied
    publisher = request.path_params["publisher"]
    model, _, method = request.path_params["model_action"].rpartition(":")
    if publisher == "google" and method in ("generateContent", "streamGenerateContent",
                                            "countTokens"):  # fmt: skip
        # The Gemini handler checks its own key: hand it the one it expects.
        key = state.settings.api_key
        body = await body_of(request)
        headers = {"x-goog-api-key": key} if key else None
        return await delegate(request, gemini_api.model_action, body, headers=headers)
    if publisher == "google" and method == "predict":
        return await _predict(request, state, model)
    if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict"):
        return await _raw_predict(request, state, model, stream=method == "streamRawPredict")
    state.record(request, None)
    return gemini_api.error_response(
        404, f"Publisher model {publisher}/{model} does not support method {method!r}."
    )


async def _predict(request: Request, state: SimulatorState, model: str) -> Response:
    body = await body_of(request)
    state.record(request, body)
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances:
        return gemini_api.error_response(400, "instances must be a non-empty list")
    texts = [i.get("content") if isinstance(i, dict) else None for i in instances]
    if not all(isinstance(t, str) and t for t in texts):
        return gemini_api.error_response(400, "each instance needs a content string")
    parameters = body.get("parameters") or {}
    dim = int(parameters.get("outputDimensionality") or state.settings.embedding_dim)
    fault = state.take_fault(request.scope["path"], model)
    early = await before_first_byte(state, fault, gemini_api.error_response, stream=False)
    if early is not None:
        return early
    predictions = [
        {
            "embeddings": {
                "values": embed(str(text), dim),
                "statistics": {"token_count": count_tokens(str(text)), "truncated": False},
            }
        }
        for text in texts
    ]
    characters = sum(len(str(text)) for text in texts)
    return json_response(
        {"predictions": predictions, "metadata": {"billableCharacterCount": characters}}
    )


async def _raw_predict(
    request: Request, state: SimulatorState, model: str, *, stream: bool
) -> Response:
    body = await body_of(request)
    if not isinstance(body, dict):
        state.record(request, body)
        return anthropic_api.error_response(400, "The request body is not valid JSON.")
    version = body.get("anthropic_version")
    if not isinstance(version, str) or not version:
        state.record(request, body)
        return anthropic_api.error_response(400, "anthropic_version: Field required")
    if "model" in body:
        state.record(request, body)
        return anthropic_api.error_response(400, "model: Extra inputs are not permitted")
    if bool(body.get("stream")) != stream:
        state.record(request, body)
        return anthropic_api.error_response(400, "stream must be true exactly for streamRawPredict")
    inner: dict[str, Any] = {**body, "model": model}
    # The Anthropic handler wants the version and its key as headers, as Anthropic's API does.
    headers = {"anthropic-version": "2023-06-01"}
    if state.settings.api_key:
        headers["x-api-key"] = state.settings.api_key
    return await delegate(request, anthropic_api.messages, inner, headers=headers)


def _deny(request: Request, state: SimulatorState) -> Response | None:
    if not state.settings.gcp_service_accounts:
        return None
    token = bearer(request)
    if token is not None and state.tokens.valid(token, "google"):
        return None
    body = {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.",
            "status": "UNAUTHENTICATED",
        }
    }
    return json_response(body, 401)


routes = [
    Route(
        "/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/"
        "{model_action:path}",
        publisher_model,
        methods=["POST"],
    )
]
