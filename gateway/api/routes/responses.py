"""OpenAI's Responses API (`/v1/responses`) in front of any configured model.

A request is translated to the canonical chat request (its `previous_response_id`
conversation rebuilt from the caller's stored responses) and runs the chat pipeline:
admission, input policy, cache, router, output policy, metering and the audit record, as
for chat. The answer or stream is translated back (`ResponsesWire`), and the finished
response is stored for the caller unless `store: false`. A target whose provider has the
Responses API (`responses_api`) is called there natively by its adapter, with the whole
conversation and `store: false`; its answer reaches this route as chat like any other.

Stored responses are the caller's alone: retrieval, deletion and `previous_response_id`
look only among the authenticated caller's (their user id); another user's id is a 404,
exactly as a missing one.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway.api.openapi import answers, request_body
from gateway.api.pipeline import Pipeline
from gateway.api.wire import ResponsesWire
from gateway.errors import InvalidRequest, NotFound
from gateway.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItemList,
    MessageItem,
    ResponseDeleted,
    ResponsesRequest,
    new_item_id,
)
from gateway.protocol.responses import Response as ResponseObject
from gateway.protocol.responses_convert import (
    check_supported,
    response_shell,
    responses_to_chat_request,
)
from gateway.responses.store import InputItem, ResponseStore, StoredResponse
from gateway.routing.routed import Routed


def responses_routes(pipeline: Pipeline, store: ResponseStore | None) -> APIRouter:
    """`POST /v1/responses`, `GET` / `DELETE /v1/responses/{id}` and
    `GET /v1/responses/{id}/input_items`; `store` None: nothing is stored (`store: true`
    is refused, `previous_response_id` finds nothing)."""
    router = APIRouter()

    @router.post(
        "/v1/responses",
        summary="Create a response, OpenAI's Responses API (streamed with stream: true)",
        openapi_extra=request_body(ResponsesRequest),
        responses=answers(ResponseObject, stream=True),
    )
    async def create(request: Request) -> Response:
        exchange, body = await pipeline.admit(request, ResponsesRequest)
        check_supported(body)
        if body.store and store is None:
            raise InvalidRequest(
                "This gateway does not store responses (responses.store is off, or the "
                "audit trail keeps no prompts); send store: false.",
                param="store",
            )
        assert exchange.principal is not None  # admitted
        user_id = exchange.principal.user_id
        history = None
        if body.previous_response_id is not None:
            if store is None:
                raise _missing(body.previous_response_id, param="previous_response_id")
            history = await store.conversation(user_id, body.previous_response_id)
        chat = responses_to_chat_request(body, history)
        keeping = store is not None and body.store is not False
        shell = response_shell(body, response_id=new_item_id("resp"), store=keeping)
        items = _with_ids(body.input_items())

        async def keep(response: ResponseObject) -> None:
            assert store is not None
            await store.save(user_id, StoredResponse(response=response, input=items))

        wire = ResponsesWire(shell, keep if keeping else None)
        answer = await pipeline.chat(exchange, chat)
        if isinstance(answer, Routed):
            await wire.finish(answer.response)
        return await pipeline.respond(exchange, answer, wire)

    @router.get(
        "/v1/responses/{response_id}",
        summary="Retrieve one of your stored responses",
        responses=answers(ResponseObject),
    )
    async def retrieve(request: Request, response_id: str) -> Response:
        stored = await _stored(request, response_id)
        return JSONResponse(stored.response.wire())

    @router.delete(
        "/v1/responses/{response_id}",
        summary="Delete one of your stored responses",
        responses=answers(ResponseDeleted),
    )
    async def delete(request: Request, response_id: str) -> Response:
        principal = await pipeline.admission.caller(request)
        if store is None or not await store.delete(principal.user_id, response_id):
            raise _missing(response_id)
        return JSONResponse(ResponseDeleted(id=response_id).wire())

    @router.get(
        "/v1/responses/{response_id}/input_items",
        summary="The input items of one of your stored responses",
        responses=answers(InputItemList),
    )
    async def input_items(
        request: Request,
        response_id: str,
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
    ) -> Response:
        stored = await _stored(request, response_id)
        items = [i.model_dump(mode="json", exclude_none=True) for i in stored.input]
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise InvalidRequest(f"No input item with id {after!r}.", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return JSONResponse(
            InputItemList(
                data=page,
                first_id=page[0].get("id") if page else None,
                last_id=page[-1].get("id") if page else None,
                has_more=len(items) > limit,
            ).wire()
        )

    async def _stored(request: Request, response_id: str) -> StoredResponse:
        principal = await pipeline.admission.caller(request)
        stored = await store.get(principal.user_id, response_id) if store is not None else None
        if stored is None:
            raise _missing(response_id)
        return stored

    return router


def _missing(response_id: str, *, param: str | None = None) -> NotFound:
    # The same answer for a missing id and another user's: nothing tells them apart.
    what = "Previous response" if param == "previous_response_id" else "Response"
    return NotFound(f"{what} with id '{response_id}' not found.", param=param)


def _with_ids(
    items: list[MessageItem | FunctionCallItem | FunctionCallOutputItem],
) -> list[InputItem]:
    """The input items with an id each (as OpenAI lists them), the client's kept."""
    prefixes = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
    return [
        item if item.id else item.model_copy(update={"id": new_item_id(prefixes[item.type])})
        for item in items
    ]
