"""OpenAI's API: chat completions, legacy completions, embeddings, and the model list."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.api.openapi import answers, request_body
from gateway.api.pipeline import Pipeline
from gateway.api.wire import OpenAIWire
from gateway.errors import ModelNotFound
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Model,
    ModelList,
    StreamOptions,
)


def openai_routes(pipeline: Pipeline) -> APIRouter:
    """`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/models`."""
    router = APIRouter()

    @router.post(
        "/v1/chat/completions",
        summary="Create a chat completion (streamed with stream: true)",
        openapi_extra=request_body(ChatCompletionRequest),
        responses=answers(ChatCompletion, stream=True),
    )
    async def chat_completions(request: Request) -> Response:
        exchange, body = await pipeline.admit(request, ChatCompletionRequest)
        answer = await pipeline.chat(exchange, body)
        wire = OpenAIWire(include_usage=_include_usage(body.stream_options))
        return await pipeline.respond(exchange, answer, wire)

    @router.post(
        "/v1/completions",
        summary="Create a legacy completion (streamed with stream: true)",
        openapi_extra=request_body(CompletionRequest),
        responses=answers(Completion, stream=True),
    )
    async def completions(request: Request) -> Response:
        exchange, body = await pipeline.admit(request, CompletionRequest)
        answer = await pipeline.completion(exchange, body)
        wire = OpenAIWire(include_usage=_include_usage(body.stream_options))
        return await pipeline.respond(exchange, answer, wire)

    @router.post(
        "/v1/embeddings",
        summary="Create embeddings",
        openapi_extra=request_body(EmbeddingRequest),
        responses=answers(EmbeddingResponse),
    )
    async def embeddings(request: Request) -> Response:
        exchange, body = await pipeline.admit(request, EmbeddingRequest)
        answer = await pipeline.embeddings(exchange, body)
        return await pipeline.respond(exchange, answer, OpenAIWire())

    @router.get("/v1/models", summary="The models you may use", responses=answers(ModelList))
    async def list_models(request: Request) -> Response:
        principal = await pipeline.admission.caller(request)
        return JSONResponse(pipeline.admission.visible_models(principal).wire())

    @router.get("/v1/models/{model_id:path}", summary="One model", responses=answers(Model))
    async def retrieve_model(request: Request, model_id: str) -> Response:
        principal = await pipeline.admission.caller(request)
        visible = {m.id for m in pipeline.admission.visible_models(principal).data}
        if model_id not in visible:
            raise ModelNotFound(
                f"The model {model_id!r} does not exist or you do not have access to it.",
                param="model",
            )
        return JSONResponse(Model(id=model_id).wire())

    return router


def _include_usage(options: StreamOptions | None) -> bool:
    return bool(options and options.include_usage)
