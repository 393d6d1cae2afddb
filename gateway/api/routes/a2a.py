"""A2A agents: the ones a caller may use, each one's card pointed at the gateway, and its
JSON-RPC endpoint (see `gateway.api.a2a_proxy`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.a2a_proxy import AgentProxy
from gateway.api.openapi import answers, request_body


class AgentEntry(BaseModel):
    """One agent the caller may use."""

    name: str
    url: str = Field(description="its JSON-RPC endpoint at the gateway")
    card: dict[str, Any] | None = Field(description="its Agent Card, pointed at the gateway")
    error: str | None = Field(description="why there is no card now (the agent is down)")


class AgentList(BaseModel):
    """`GET /a2a/agents`."""

    agents: list[AgentEntry]


class JsonRpcRequest(BaseModel):
    """An A2A JSON-RPC request (SendMessage, SendStreamingMessage, GetTask, CancelTask,
    SubscribeToTask; or their 0.3 names)."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: str = "2.0"
    id: str | int | None = None
    method: str
    params: dict[str, Any] = Field(default_factory=dict)


class JsonRpcResponse(BaseModel):
    """A JSON-RPC response: a result, or an error (`code`, `message`, `data`)."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: str = "2.0"
    id: str | int | None = None
    result: Any = None
    error: dict[str, Any] | None = None


def a2a_routes(proxy: AgentProxy) -> APIRouter:
    """`GET /a2a/agents`, `GET /a2a/{agent}/.well-known/agent-card.json` and
    `POST /a2a/{agent}`."""
    router = APIRouter()

    @router.get("/a2a/agents", summary="The A2A agents you may use", responses=answers(AgentList))
    async def agents(request: Request) -> Response:
        return JSONResponse({"agents": await proxy.listing(request)})

    @router.get(
        "/a2a/{agent}/.well-known/agent-card.json",
        summary="An A2A agent's card, its URL the gateway's",
        responses=answers(None),
    )
    async def agent_card(request: Request, agent: str) -> Response:
        return JSONResponse(await proxy.card(request, agent))

    @router.get(
        "/a2a/{agent}/.well-known/agent.json",
        summary="An A2A agent's card at A2A 0.2's well-known path",
        responses=answers(None),
    )
    async def legacy_agent_card(request: Request, agent: str) -> Response:
        return JSONResponse(await proxy.card(request, agent))

    @router.post(
        "/a2a/{agent}",
        summary="Call an A2A agent (JSON-RPC; streamed for SendStreamingMessage and "
        "SubscribeToTask)",
        openapi_extra=request_body(JsonRpcRequest),
        responses=answers(JsonRpcResponse, stream=True),
    )
    async def call(request: Request, agent: str) -> Response:
        return await proxy.call(request, agent)

    return router
