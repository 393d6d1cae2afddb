"""A2A agents through the gateway: discovery of the agents a caller may use, and their
JSON-RPC calls forwarded with the gateway's stages around them.

A call to `/a2a/<agent>`, in order:

    admission     the caller authenticated (401); the agent known (404) and theirs to use
                  (403, as a model outside their grant); the body read within the limits
    JSON-RPC      a request of a forwarded method, else JSON-RPC's parse / invalid-request /
                  method-not-found / invalid-params error
    limits        the caller's rate limits and budget, as for a model named `a2a/<agent>`
    ownership     a call that names a task goes on only for the caller who started it
                  (`gateway.a2a.tasks`); otherwise A2A's "task not found"
    input policy  the message's text parts (`A2APolicy`)
    upstream      the agent, with the gateway's credential for it (never the caller's) and,
                  where configured, the caller's identity headers; a stream is relayed event
                  by event
    output policy every text part of the answer, every streamed event
    response      the answer, and one audit record: who, the agent (`model_requested`), the
                  method (`admin_action` `a2a.<method>`), the task (`admin_target`
                  `task:<id>`), the message and answer texts per the audit content modes,
                  the policy's decisions, latency, outcome

Once the call is a JSON-RPC request, every failure is a JSON-RPC error (HTTP 200, as JSON-RPC
over HTTP answers), its ErrorInfo naming the gateway's error code; a stream that fails after
it started ends with a JSON-RPC error event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from fnmatch import fnmatchcase
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from gateway.a2a.config import A2AConfig
from gateway.a2a.tasks import TaskOwners
from gateway.a2a.upstream import AgentUpstream
from gateway.accounting.meter import Meter
from gateway.api.a2a_policy import A2APolicy
from gateway.api.admission import Admission
from gateway.api.exchange import Exchange
from gateway.api.response import Responder
from gateway.config import LimitsConfig
from gateway.errors import GatewayError, NotFound, PermissionDenied, UpstreamError
from gateway.identity.principal import Principal
from gateway.limits.body import read_body
from gateway.protocol import a2a as rpc
from gateway.protocol.a2a import JsonObject, RpcError, RpcRequest
from gateway.routing.failover import Route
from gateway.routing.routed import Routed, RoutedStream

PREFIX = "a2a/"  # an agent's name as a model: rate limits, metrics, the audit's model field


class AgentProxy:
    """The configured agents, and the stages around their calls."""

    def __init__(
        self,
        config: A2AConfig,
        admission: Admission,
        meter: Meter,
        policy: A2APolicy,
        responder: Responder,
        tasks: TaskOwners,
        *,
        limits: LimitsConfig,
    ) -> None:
        self.config = config
        self._tasks = tasks
        self.agents = {name: AgentUpstream(name, agent) for name, agent in config.agents.items()}
        self._admission = admission
        self._meter = meter
        self._policy = policy
        self._responder = responder
        self._limits = limits

    def may_use(self, principal: Principal, name: str) -> bool:
        """Whether the caller's groups (and their key's model scope, as `a2a/<name>`) allow
        the agent."""
        patterns = self.config.agents[name].groups
        grouped = "*" in patterns or any(
            fnmatchcase(group, pattern) for group in principal.groups for pattern in patterns
        )
        scope = principal.model_scope
        return grouped and (scope is None or any(fnmatchcase(PREFIX + name, p) for p in scope))

    def endpoint(self, request: Request, name: str) -> str:
        """The agent's URL at the gateway, as clients reach it."""
        base = self.config.public_url or str(request.base_url)
        return f"{base.rstrip('/')}/a2a/{name}"

    async def listing(self, request: Request) -> list[dict[str, Any]]:
        """The agents the caller may use, each with its card (or why it has none now)."""
        principal = await self._admission.caller(request)
        names = [name for name in self.agents if self.may_use(principal, name)]
        return list(await asyncio.gather(*(self._entry(request, name) for name in names)))

    async def card(self, request: Request, name: str) -> dict[str, Any]:
        """The agent's card pointed at the gateway; 404 for an agent the caller may not use
        (as for a model outside their grant: its existence is not shown)."""
        principal = await self._admission.caller(request)
        exchange: Exchange = request.state.exchange
        if name not in self.agents or not self.may_use(principal, name):
            raise NotFound(
                f"The agent {name!r} does not exist or you do not have access to it.",
                code="agent_not_found",
            )
        exchange.model = PREFIX + name
        view = await self.agents[name].card()
        return view.for_caller(self.endpoint(request, name))

    async def call(self, request: Request, name: str) -> Response:
        """One JSON-RPC call to the agent, through every stage (see the module docstring)."""
        exchange: Exchange = request.state.exchange
        principal = await self._admission.caller(request)
        upstream = self._agent(principal, name)
        exchange.model = PREFIX + name
        raw = await read_body(
            request.stream(),
            limit=self._limits.max_body_bytes,
            timeout_s=self._limits.body_timeout_s,
            declared_length=request.headers.get("content-length"),
        )
        try:
            call = rpc.parse_request(raw)
        except RpcError as error:
            return _rpc_error(exchange, rpc.request_id_of(raw), error)
        exchange.admin_action = f"a2a.{call.method}"
        task = call.task_id()
        exchange.admin_target = f"task:{task}" if task else None
        try:
            if task and not await self._tasks.owns(name, task, principal.user_id):
                missing = RpcError(rpc.TASK_NOT_FOUND, "Task not found.", "task_not_found")
                return _rpc_error(exchange, call.id, missing)
            exchange.allowance = await self._meter.admit(
                principal,
                PREFIX + name,
                [],
                prompt_tokens=len(raw) // 4 + 1,
                max_tokens=0,
            )
            if call.kind in ("send", "stream"):
                call = await self._policy.message(exchange, call, PREFIX + name)
            identity = upstream.config.forward_identity.headers(
                principal.user_id, principal.email, principal.groups
            )
            headers = upstream.headers(request.headers, identity)
            if call.kind in ("stream", "subscribe"):
                return await self._stream(exchange, upstream, call, headers)
            return await self._whole(exchange, upstream, call, headers)
        except GatewayError as error:
            return _rpc_error(exchange, call.id, _as_rpc_error(error), error.headers)

    async def aclose(self) -> None:
        """Close every agent's connections (replica shutdown)."""
        for upstream in self.agents.values():
            await upstream.aclose()

    def _agent(self, principal: Principal, name: str) -> AgentUpstream:
        if name not in self.agents:
            raise NotFound(f"The agent {name!r} does not exist.", code="agent_not_found")
        if not self.may_use(principal, name):
            raise PermissionDenied(
                f"You are not allowed to use the agent {name!r}.", code="agent_not_allowed"
            )
        return self.agents[name]

    async def _entry(self, request: Request, name: str) -> dict[str, Any]:
        url = self.endpoint(request, name)
        try:
            view = await self.agents[name].card()
        except GatewayError as error:  # one agent down does not hide the others
            return {"name": name, "url": url, "card": None, "error": error.message}
        return {"name": name, "url": url, "card": view.for_caller(url), "error": None}

    async def _whole(
        self, exchange: Exchange, upstream: AgentUpstream, call: RpcRequest, headers: Any
    ) -> Response:
        started = time.perf_counter()
        answer = await upstream.call(call.body(), headers)
        route = Route(target=exchange.model or "", upstream_ms=_ms_since(started))
        exchange.route = route
        rules = self._policy.answer_filter(exchange)
        answer = await self._relayed(exchange, call, answer, rules)
        return await self._responder.respond(exchange, Routed(answer, route), A2AWire(call.id))

    async def _stream(
        self, exchange: Exchange, upstream: AgentUpstream, call: RpcRequest, headers: Any
    ) -> Response:
        started = time.perf_counter()
        events = upstream.stream(call.body(), headers)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise UpstreamError(f"The agent {upstream.name!r} sent an empty stream.") from None
        except BaseException:
            await events.aclose()
            raise
        route = Route(target=exchange.model or "", upstream_ms=_ms_since(started))
        exchange.route = route
        exchange.first_chunk_ms = exchange.elapsed_ms()
        rules = self._policy.answer_filter(exchange)
        try:
            first = await self._relayed(exchange, call, first, rules)
        except BaseException:
            await events.aclose()
            raise
        if "error" in first:  # refused before it started: one JSON answer, as the agent gave
            await events.aclose()
            return await self._responder.respond(exchange, Routed(first, route), A2AWire(call.id))

        async def relayed() -> AsyncGenerator[JsonObject, None]:
            yield first
            async with aclosing(events):
                async for event in events:
                    event = await self._relayed(exchange, call, event, rules)
                    if "error" in event:  # the agent's own error event ends the stream
                        raise AgentErrorEvent(event)
                    yield event

        stream = RoutedStream(route, relayed())
        return await self._responder.respond(exchange, stream, A2AWire(call.id))

    async def _relayed(
        self, exchange: Exchange, call: RpcRequest, answer: JsonObject, rules: Any
    ) -> JsonObject:
        """An agent's JSON-RPC response (or streamed event) as the caller gets it: under the
        caller's own request id, its result through the output policy."""
        if "error" in answer:
            exchange.error_code = "agent_error"
            return {"jsonrpc": "2.0", "id": call.id, "error": answer["error"]}
        result = await self._policy.answer(exchange, rules, answer.get("result"))
        task = rpc.task_id_of(result)
        if task and exchange.admin_target != f"task:{task}":  # a task this call started
            assert exchange.principal is not None  # admitted
            await self._tasks.claim(call_agent(exchange), task, exchange.principal.user_id)
            exchange.admin_target = f"task:{task}"
        return {"jsonrpc": "2.0", "id": call.id, "result": result}


def call_agent(exchange: Exchange) -> str:
    """The agent a call went to (its model name without the prefix)."""
    return (exchange.model or "").removeprefix(PREFIX)


class AgentErrorEvent(UpstreamError):
    """An error event the agent sent mid-stream: relayed as it is, and the stream's outcome
    (so that its audit record says so)."""

    default_code = "agent_error"

    def __init__(self, event: JsonObject) -> None:
        error = event.get("error")
        detail = error.get("message") if isinstance(error, dict) else None
        super().__init__(f"The agent ended its stream with an error: {detail}")
        self.event = event


class A2AWire:
    """A2A's JSON-RPC wire: a response object as it is; a stream as `data:` events, each one
    JSON-RPC response (errors as `event: error`, as `a2a-sdk` servers send them)."""

    def __init__(self, request_id: str | int | None) -> None:
        self._id = request_id

    def answer(self, response: JsonObject) -> dict[str, Any]:
        return response

    async def stream(self, chunks: AsyncGenerator[JsonObject, None]) -> AsyncGenerator[bytes, None]:
        async with aclosing(chunks):
            async for event in chunks:
                yield _sse(event)

    def error_event(self, error: GatewayError) -> bytes:
        if isinstance(error, AgentErrorEvent):
            return _sse(error.event)
        code, message = _code_for(error), error.message
        metadata = {"code": error.code or "error", "status": str(error.status)}
        return _sse(rpc.error_body(self._id, code, message, metadata))


def _sse(event: JsonObject) -> bytes:
    data = json.dumps(event, separators=(",", ":")).encode()
    prefix = b"event: error\n" if "error" in event else b""
    return prefix + b"data: " + data + b"\n\n"


def _as_rpc_error(error: GatewayError) -> RpcError:
    return RpcError(_code_for(error), error.message, error.code or "error")


def _code_for(error: GatewayError) -> int:
    return {
        400: rpc.INVALID_PARAMS,
        403: rpc.POLICY_BLOCKED,
        429: rpc.RATE_LIMITED,
        502: rpc.UPSTREAM_FAILED,
        503: rpc.UNAVAILABLE,
        504: rpc.UPSTREAM_TIMEOUT,
    }.get(error.status, rpc.INTERNAL_ERROR)


def _rpc_error(
    exchange: Exchange,
    request_id: str | int | None,
    error: RpcError,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    exchange.error_code = error.reason
    metadata = {"code": error.reason, "request_id": exchange.request_id}
    body = rpc.error_body(request_id, error.code, error.message, metadata)
    return JSONResponse(body, headers=headers or {})


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
