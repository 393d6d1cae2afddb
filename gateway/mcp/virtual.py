"""A virtual server: the tools, resources and prompts of its upstreams as one MCP server,
namespaced (`gateway.mcp.names`) and filtered by the caller's groups (`gateway.mcp.access`).

A tool call passes, in order: the caller's grant (a tool they may not use is refused as if it
did not exist), their rate limits (the meter, as for a model call: `rate_limits.models` may
name a tool as `mcp:<virtual server>/<server>__<tool>`), the input policy over the arguments,
the upstream (progress relayed to the caller), and the output policy over the result. Each
request notes what happened on its exchange, which becomes its one audit record: the
namespaced name asked for (`model_requested`), the upstream and its tool (`route_taken`,
`mcp:<server>/<tool>`), the arguments as forwarded (`prompt`, stored per the audit's content
mode), the result text (`response`), the policy's decisions and one `mcp.<method>` decision
whose action is the outcome (allowed, redacted, denied, blocked, rate_limited,
upstream_error) with the result size and the upstream's latency in its detail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT

from gateway.accounting.meter import Meter
from gateway.audit.record import PolicyDecision
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.mcp.access import ToolGrant, tool_grant
from gateway.mcp.config import VirtualServer
from gateway.mcp.errors import ToolRefused
from gateway.mcp.names import qualified, resource_uri, split_qualified, split_resource_uri
from gateway.mcp.policy import result_text, screen_arguments, screen_resource, screen_result
from gateway.mcp.upstream import UpstreamClient, UpstreamFailure
from gateway.policy.redaction import redact_pii

if TYPE_CHECKING:
    from gateway.api.exchange import Exchange
    from gateway.api.input_policy import InputPolicy

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Item = TypeVar("_Item", types.Tool, types.Resource, types.Prompt)


class VirtualMcpServer:
    """One virtual server over its upstream clients, for callers on exchanges."""

    def __init__(
        self,
        name: str,
        config: VirtualServer,
        upstreams: dict[str, UpstreamClient],
        *,
        policy: InputPolicy | None,
        meter: Meter,
    ) -> None:
        self.name = name
        self.config = config
        self._upstreams = {s: upstreams[s] for s in config.servers}
        self._policy = policy
        self._meter = meter
        # Namespaced tool -> input schema, as last listed here (see `input_schema`).
        self._schemas: dict[str, dict[str, Any]] = {}

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema of a namespaced tool as this replica last listed it (None: not
        listed here yet). The SDK checks a modern client's `Mcp-Param-*` headers against it;
        without this it would run the whole tools/list, every upstream's, on every call."""
        return self._schemas.get(name)

    async def list_tools(self, exchange: Exchange) -> list[types.Tool]:
        """The tools the caller may call, namespaced."""
        grant, caller = self._caller(exchange)
        listed = await self._gather(exchange, "tools/list", grant, lambda u: u.list_tools(caller))
        tools = [
            tool.model_copy(update={"name": qualified(server, tool.name)})
            for server, tools in listed
            for tool in tools
            if grant.allows_tool(server, tool.name)
        ]
        self._schemas.update((t.name, t.input_schema) for t in tools)
        return tools

    async def list_resources(self, exchange: Exchange) -> list[types.Resource]:
        """The resources of the servers the caller may use, with gateway URIs."""
        grant, caller = self._caller(exchange)
        listed = await self._gather(
            exchange, "resources/list", grant, lambda u: u.list_resources(caller)
        )
        return [
            r.model_copy(update={"uri": resource_uri(server, r.uri)})
            for server, resources in listed
            for r in resources
        ]

    async def list_prompts(self, exchange: Exchange) -> list[types.Prompt]:
        """The prompts of the servers the caller may use, namespaced."""
        grant, caller = self._caller(exchange)
        listed = await self._gather(
            exchange, "prompts/list", grant, lambda u: u.list_prompts(caller)
        )
        return [
            p.model_copy(update={"name": qualified(server, p.name)})
            for server, prompts in listed
            for p in prompts
        ]

    async def read_resource(self, exchange: Exchange, uri: str) -> types.ReadResourceResult:
        """An upstream's resource by its gateway URI."""
        grant, caller = self._caller(exchange)
        exchange.model = uri
        parts = split_resource_uri(uri)
        server, upstream_uri = parts if parts is not None else ("", "")

        async def read() -> types.ReadResourceResult:
            upstream = self._permitted(exchange, grant, server, None, "resource", uri)
            exchange.tried = f"mcp:{server}"
            result = await upstream.read_resource(caller, upstream_uri)
            contents = [c.model_copy(update={"uri": uri}) for c in result.contents]
            result = result.model_copy(update={"contents": contents})
            return await screen_resource(self._policy, exchange, result)

        return await _noted(exchange, "resources/read", read)

    async def follow_resource(
        self, exchange: Exchange, method: str, uri: str, follow: Callable[[], Awaitable[None]]
    ) -> None:
        """`follow()` (record a subscription to `uri`, or its end) once the caller may read
        the resource; refused like a read otherwise."""
        grant, _ = self._caller(exchange)
        exchange.model = uri
        server = (split_resource_uri(uri) or ("", ""))[0]

        async def run() -> None:
            self._permitted(exchange, grant, server, None, "resource", uri)
            exchange.tried = f"mcp:{server}"
            await follow()

        await _noted(exchange, method, run)

    async def get_prompt(
        self, exchange: Exchange, name: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult:
        """An upstream's prompt by its namespaced name."""
        grant, caller = self._caller(exchange)
        exchange.model = name
        server, prompt = split_qualified(name) or ("", "")

        async def get() -> types.GetPromptResult:
            upstream = self._permitted(exchange, grant, server, None, "prompt", name)
            exchange.tried = f"mcp:{server}/{prompt}"
            return await upstream.get_prompt(caller, prompt, arguments)

        return await _noted(exchange, "prompts/get", get)

    async def call_tool(
        self,
        exchange: Exchange,
        name: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFnT | None = None,
    ) -> types.CallToolResult:
        """Call the namespaced tool `name` for the caller (see the module docstring);
        ToolRefused when the gateway refuses it or the upstream does not answer."""
        grant, caller = self._caller(exchange)
        exchange.model = name
        server, tool = split_qualified(name) or ("", "")
        raw = arguments or {}
        exchange.prompt = redact_pii(_json(raw))  # until the policy decides what is sent on

        async def call() -> types.CallToolResult:
            upstream = self._permitted(exchange, grant, server, tool, "tool", name)
            exchange.tried = f"mcp:{server}/{tool}"
            allowance = await self._admit(caller, name)
            try:
                sent = await screen_arguments(self._policy, exchange, raw)
                exchange.prompt = _json(sent)
                started = time.perf_counter()
                try:
                    result = await upstream.call_tool(caller, tool, sent, progress)
                finally:
                    upstream_ms = (time.perf_counter() - started) * 1000
                result = await screen_result(self._policy, exchange, result)
            finally:
                await self._meter.cancel(allowance)
            text = result_text(result)
            exchange.response_parts = [text] if text else []
            if result.is_error:
                exchange.error_code = "tool_error"
            _decide(
                exchange,
                "tools/call",
                "redacted" if any(d.action == "redact" for d in exchange.decisions) else "allowed",
                f"result_bytes={len(text.encode())} upstream_ms={upstream_ms:.1f}",
            )
            return result

        return await _noted(exchange, "tools/call", call, decided=True)

    def _caller(self, exchange: Exchange) -> tuple[ToolGrant, Principal]:
        assert exchange.principal is not None  # the endpoint authenticated the request
        return tool_grant(exchange.principal, self.config.access), exchange.principal

    def _permitted(
        self,
        exchange: Exchange,
        grant: ToolGrant,
        server: str,
        tool: str | None,
        kind: str,
        name: str,
    ) -> UpstreamClient:
        upstream = self._upstreams.get(server)
        if upstream is None:
            raise ToolRefused.not_found(kind, name, denied=False)
        allowed = grant.allows_server(server) if tool is None else grant.allows_tool(server, tool)
        if not allowed:
            exchange.tried = f"mcp:{server}" + (f"/{tool}" if tool else "")
            _decide(exchange, f"{kind}.access", "denied", f"not allowed by {grant.describe()}")
            raise ToolRefused.not_found(kind, name, denied=True)
        return upstream

    async def _admit(self, caller: Principal, name: str) -> Any:
        try:
            return await self._meter.admit(
                caller, f"mcp:{self.name}/{name}", [], prompt_tokens=0, max_tokens=0
            )
        except GatewayError as refused:  # RateLimited, QuotaExceeded, the limit store down
            raise ToolRefused.rate_limited(refused.message) from None

    async def _gather(
        self,
        exchange: Exchange,
        method: str,
        grant: ToolGrant,
        listing: Callable[[UpstreamClient], Awaitable[list[_Item]]],
    ) -> list[tuple[str, list[_Item]]]:
        """Each permitted upstream's listing, concurrently; one that fails is left out (and
        named in the decision's detail) rather than failing the whole list."""
        servers = [s for s in self._upstreams if grant.allows_server(s)]
        answers = await asyncio.gather(
            *(listing(self._upstreams[s]) for s in servers), return_exceptions=True
        )
        listed: list[tuple[str, list[_Item]]] = []
        missing = []
        for server, answer in zip(servers, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("MCP %s on %s failed: %s", method, server, answer)
                missing.append(server)
            else:
                listed.append((server, answer))
        detail = f"servers={','.join(s for s, _ in listed)}"
        if missing:
            detail += f" unavailable={','.join(missing)}"
        _decide(exchange, method, "allowed", detail)
        return listed


async def _noted(
    exchange: Exchange,
    method: str,
    run: Callable[[], Awaitable[_T]],
    *,
    decided: bool = False,
) -> _T:
    """`run()`, its refusal or failure noted on the exchange as this request's outcome."""
    try:
        result = await run()
    except ToolRefused as refused:
        exchange.error_code = refused.error_code
        _decide(exchange, method, refused.outcome, refused.message)
        raise
    except UpstreamFailure as failure:
        exchange.error_code = failure.code
        _decide(exchange, method, "upstream_error", str(failure))
        raise ToolRefused.upstream(str(failure), failure.code) from None
    if not decided:
        _decide(exchange, method, "allowed")
    return result


def _decide(exchange: Exchange, method: str, outcome: str, detail: str | None = None) -> None:
    exchange.decisions.append(
        PolicyDecision(rule=f"mcp.{method}", detector="mcp", action=outcome, detail=detail)
    )


def _json(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True)
