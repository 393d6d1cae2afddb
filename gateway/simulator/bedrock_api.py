"""AWS Bedrock Runtime: Converse, ConverseStream (AWS event-stream framing) and InvokeModel
for the Titan and Cohere embedding models, at `/model/{modelId}/...`.

Checks what Bedrock checks: a SigV4 signature by one of `aws_credentials` (or a Bedrock API
key, `api_key`, as a bearer token), turns that alternate between user and assistant and
start with the user, `toolConfig` whenever the history holds tool blocks, no unknown fields,
and that a cross-region inference profile (`us.`, `eu.`, ...) belongs to the geography of the
region the request was signed for. Errors carry `x-amzn-errortype`, as boto3 reads them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator import eventstream
from gateway.simulator.content import Completion, Prompt, Tool, count_tokens, embed, generate
from gateway.simulator.sigv4 import SignatureError, verify
from gateway.simulator.state import SimulatorState, get_state
from gateway.simulator.wire import BadRequest, before_first_byte, event_stream, json_response

_STOP = {"end": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens",
         "tool_use": "tool_use"}  # fmt: skip
_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_CONVERSE_FIELDS = frozenset(
    {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
     "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
     "requestMetadata", "performanceConfig", "serviceTier", "outputConfig"}
)  # fmt: skip
_INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_GEOGRAPHIES = {"us": "us", "eu": "eu", "ap": "apac", "ca": "ca", "us-gov": "us-gov"}
_PROFILE_PREFIXES = ("us", "eu", "apac", "us-gov", "global", "jp", "au", "ca")
_MALFORMED = eventstream.corrupt(
    eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error as Bedrock sends it: `{"message"}` and the type in `x-amzn-errortype`."""
    kind = _ERROR_TYPES.get(
        status, "InternalServerException" if status >= 500 else "ValidationException"
    )
    return _error(status, kind, message, headers)


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    headers = {
        **(headers or {}),
        "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
    }
    return json_response({"message": message}, status, headers=headers)


async def converse(request: Request) -> Response:
    """`POST /model/{modelId}/converse` and `/converse-stream`."""
    state, body, denied = await _admit(request)
    if denied is not None:
        return denied
    model = request.path_params["model_id"]
    try:
        prompt = _prompt(model, body)
        (completion,) = generate(prompt, state.settings.answer_words)
    except ValueError as exc:
        return error_response(400, str(exc))
    if _filtered(body, state.settings.content_filter_terms):
        completion = Completion(0, "", "end")
        stop = "content_filtered"
    else:
        stop = _STOP[completion.finish]
    stream = request.scope["path"].endswith("/converse-stream")
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    usage = {
        "inputTokens": prompt.prompt_tokens,
        "outputTokens": completion.tokens,
        "totalTokens": prompt.prompt_tokens + completion.tokens,
    }
    if not stream:
        return json_response(
            {
                "output": {"message": {"role": "assistant", "content": [_block(completion)]}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 0},
            }
        )
    events = [
        eventstream.event("messageStart", {"role": "assistant"}),
        *_block_events(completion),
        eventstream.event("messageStop", {"stopReason": stop}),
        eventstream.event("metadata", {"usage": usage, "metrics": {"latencyMs": 0}}),
    ]
    return event_stream(state, events, fault, _MALFORMED, media_type=eventstream.MEDIA_TYPE)


async def invoke(request: Request) -> Response:
    """`POST /model/{modelId}/invoke` for Titan and Cohere embedding models."""
    state, body, denied = await _admit(request)
    if denied is not None:
        return denied
    model = request.path_params["model_id"]
    base = model.rsplit("/", 1)[-1]
    if base.split(".", 1)[0] in _PROFILE_PREFIXES:
        base = base.split(".", 1)[1]
    try:
        if base.startswith("amazon.titan-embed"):
            answer, tokens = _titan(state, body)
        elif base.startswith("cohere.embed"):
            answer, tokens = _cohere(state, body)
        else:
            raise BadRequest("the simulator serves InvokeModel for embedding models only")
    except ValueError as exc:
        return error_response(400, str(exc))
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=False)) is not None:
        return early
    return json_response(answer, headers={"x-amzn-bedrock-input-token-count": str(tokens)})


routes = [
    Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
    Route("/model/{model_id:path}/converse-stream", converse, methods=["POST"]),
    Route("/model/{model_id:path}/invoke", invoke, methods=["POST"]),
]


# --- admission --------------------------------------------------------------------------------


async def _admit(request: Request) -> tuple[SimulatorState, Any, Response | None]:
    """The state, the parsed body, and the refusal of a request that is not let in."""
    state = get_state(request)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    state.record(request, body)
    try:
        region = _signed_region(request, state, raw)
    except SignatureError as exc:
        return state, body, _error(403, exc.code, exc.message)
    if not isinstance(body, dict):
        return (
            state,
            body,
            error_response(
                400, "Malformed input request, please reformat your input and try again."
            ),
        )
    profile = request.path_params["model_id"].rsplit("/", 1)[-1].split(".", 1)[0]
    if region is not None and profile in _PROFILE_PREFIXES and profile != "global":
        geography = (
            "us-gov" if region.startswith("us-gov") else _GEOGRAPHIES.get(region.split("-", 1)[0])
        )
        if profile != geography and not (profile in ("jp", "au") and geography == "apac"):
            return state, body, error_response(400, "The provided model identifier is invalid.")
    return state, body, None


def _signed_region(request: Request, state: SimulatorState, raw: bytes) -> str | None:
    settings = state.settings
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if settings.api_key is None and not settings.aws_credentials:
            return None
        if settings.api_key is not None and token.strip() == settings.api_key:
            return None
        raise SignatureError(
            "UnrecognizedClientException",
            "Invalid API Key format: Must start with pre-defined prefix",
        )
    if not settings.aws_credentials:
        return None
    query = request.scope.get("query_string", b"").decode()
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    url = f"{request.url.scheme}://{request.headers.get('host', '')}{raw_path.decode()}"
    return verify(
        method=request.method,
        url=f"{url}?{query}" if query else url,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=raw,
        secrets=settings.aws_credentials,
        service="bedrock",
    )


# --- Converse -----------------------------------------------------------------------------------


def _prompt(model: str, body: dict[str, Any]) -> Prompt:
    unknown = sorted(set(body) - _CONVERSE_FIELDS)
    if unknown:
        raise BadRequest(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("The messages field is required and must not be empty.")
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("content"), list)
            or not message["content"]
        ):
            raise BadRequest(f"messages.{index}: a message needs a non-empty content list")
        expected = "user" if index % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise BadRequest(
                "A conversation must start with a user message and alternate between user "
                "and assistant roles. Try again with a conversation that alternates."
            )
    blocks = [b for m in messages for b in m["content"] if isinstance(b, dict)]
    config = body.get("toolConfig")
    if any("toolUse" in b or "toolResult" in b for b in blocks) and not config:
        raise BadRequest(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    inference = body.get("inferenceConfig") or {}
    if set(inference) - _INFERENCE_FIELDS:
        raise BadRequest(
            f"inferenceConfig: unknown fields {sorted(set(inference) - _INFERENCE_FIELDS)}"
        )
    system = " ".join(
        str(s.get("text", "")) for s in body.get("system") or [] if isinstance(s, dict)
    )
    texts = [system] + [_text(m["content"]) for m in messages]
    last = messages[-1]["content"]
    results = [
        _text(b["toolResult"].get("content") or [])
        for b in last
        if isinstance(b, dict) and "toolResult" in b
    ]
    prompt = Prompt(
        model=model,
        user_text=next(
            (_text(m["content"], tools=False) for m in reversed(messages) if m["role"] == "user"),
            "",
        ),
        prompt_tokens=count_tokens(*texts),
        tool_result=" ".join(results) if results else None,
        max_tokens=inference.get("maxTokens"),
        stop=[s for s in inference.get("stopSequences") or [] if isinstance(s, str)],
    )
    if isinstance(config, dict):
        prompt.tools = [
            Tool(t["toolSpec"]["name"], (t["toolSpec"].get("inputSchema") or {}).get("json") or {})
            for t in config.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)
        ]
        choice = config.get("toolChoice") or {}
        if "any" in choice:
            prompt.tool_mode = "required"
        elif "tool" in choice:
            prompt.forced_tool = choice["tool"].get("name")
    return prompt


def _text(blocks: list[Any], *, tools: bool = True) -> str:
    texts = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            texts.append(str(block["text"]))
        elif "json" in block:
            texts.append(json.dumps(block["json"]))
        elif tools and isinstance(block.get("toolUse"), dict):
            texts.append(json.dumps(block["toolUse"].get("input", {})))
        elif tools and isinstance(block.get("toolResult"), dict):
            texts.append(_text(block["toolResult"].get("content") or []))
    return " ".join(texts)


def _filtered(body: dict[str, Any], terms: list[str]) -> bool:
    text = json.dumps(body.get("messages", "")).lower()
    return any(term.lower() in text for term in terms)


def _tool_use_id(completion: Completion) -> str:
    assert completion.tool_call is not None
    return f"tooluse_{completion.tool_call.key[:22]}"


def _block(completion: Completion) -> dict[str, Any]:
    call = completion.tool_call
    if call is None:
        return {"text": completion.text}
    return {
        "toolUse": {
            "toolUseId": _tool_use_id(completion),
            "name": call.name,
            "input": call.arguments,
        }
    }


def _block_events(completion: Completion) -> list[bytes]:
    call = completion.tool_call
    if call is None:
        deltas = [
            eventstream.event(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}
            )
            for piece in completion.pieces()
        ]
        return [*deltas, eventstream.event("contentBlockStop", {"contentBlockIndex": 0})]
    start = {"toolUse": {"toolUseId": _tool_use_id(completion), "name": call.name}}
    arguments = call.arguments_json
    pieces = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
    return [
        eventstream.event("contentBlockStart", {"contentBlockIndex": 0, "start": start}),
        *(
            eventstream.event(
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}},
            )
            for piece in pieces
        ),
        eventstream.event("contentBlockStop", {"contentBlockIndex": 0}),
    ]


# --- embeddings -------------------------------------------------------------------------------


def _titan(state: SimulatorState, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        raise BadRequest("Malformed input request: #: required key [inputText] not found")
    dim = body.get("dimensions", state.settings.embedding_dim)
    if "dimensions" in body and dim not in (256, 512, 1024):
        raise BadRequest("Malformed input request: #/dimensions: must be 256, 512 or 1024")
    tokens = count_tokens(text)
    vector = embed(text, int(dim))
    return {
        "embedding": vector,
        "embeddingsByType": {"float": vector},
        "inputTextTokenCount": tokens,
    }, tokens


def _cohere(state: SimulatorState, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("Malformed input request: #: required key [texts] not found")
    if body.get("input_type") not in (
        "search_document",
        "search_query",
        "classification",
        "clustering",
    ):
        raise BadRequest("Malformed input request: #/input_type: is not a valid enum value")
    dim = int(body.get("output_dimension") or state.settings.embedding_dim)
    vectors = [embed(text, dim) for text in texts]
    answer: dict[str, Any] = {"id": state.next_id("emb-"), "texts": texts}
    if body.get("embedding_types"):
        answer |= {"embeddings": {"float": vectors}, "response_type": "embeddings_by_type"}
    else:
        answer |= {"embeddings": vectors, "response_type": "embeddings_floats"}
    return answer, count_tokens(*texts)
