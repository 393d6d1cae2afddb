"""The response stage: the gateway's headers, the cost settled, the answer put on its wire,
and one audit record for every request, errors included.

`open` starts a request's exchange; `respond` answers a model route (JSON at once, or a
stream whose record is written when it ends); `close` runs after every response, the error
responses of the handlers included: it adds the headers every answer carries, settles or
cancels what the meter granted, and hands the record of a non-streamed request to the audit
writer (queued, written off the request path).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders

from gateway.accounting.meter import Meter
from gateway.api.exchange import Exchange, route_path
from gateway.api.metrics import RequestMetrics
from gateway.api.streaming import sse_response
from gateway.api.wire import Wire
from gateway.audit.writer import AuditWriter
from gateway.errors import GatewayError
from gateway.haproxy import ClientAddress
from gateway.routing.failover import ROUTE_HEADER
from gateway.routing.routed import Routed, RoutedStream

ACCOUNTING_FAILED = "accounting_failed"  # the error code of a request whose settlement failed

log = logging.getLogger(__name__)

# Probes, polled every few seconds by load balancers and Kubernetes: not requests of anyone's.
_UNAUDITED = frozenset({"/healthz", "/readyz"})
# The console's static files (HTML, scripts, styles); its SSO sign-ins and the admin API calls
# it makes are audited.
_UNAUDITED_PREFIX = "/console"
_AUDITED_UNDER_IT = "/console/sso/"

_T = TypeVar("_T")
_C = TypeVar("_C")


class Responder:
    """Answers requests and accounts for each one: its audit record and its metrics.
    `replica` names this ingress replica in an `x-raygate-replica` header; `client_address`
    reads the client's address from the peer and, behind raygate-haproxy, its headers."""

    def __init__(
        self,
        meter: Meter,
        audit: AuditWriter | None,
        metrics: RequestMetrics | None = None,
        *,
        replica: str | None = None,
        client_address: ClientAddress | None = None,
    ) -> None:
        self._meter = meter
        self._client_address = client_address or ClientAddress(None)
        self.audit = audit
        self._metrics = metrics
        self._replica = replica

    def open(self, request: Request) -> Exchange:
        """The exchange of a request that just arrived."""
        request.state.started = time.perf_counter()
        request.state.request_id = f"req_{uuid.uuid4().hex}"
        exchange = Exchange(
            request_id=request.state.request_id,
            path=route_path(request),
            client_address=self._client_address(
                request.client.host if request.client else None, request.headers
            ),
            headers=request.headers,
        )
        request.state.exchange = exchange
        return exchange

    async def respond(
        self, exchange: Exchange, answer: Routed[_T] | RoutedStream[_C], wire: Wire[_T, _C]
    ) -> Response:
        """A model route's answer: JSON with its cost, or a stream."""
        if isinstance(answer, RoutedStream):
            return self._stream(exchange, answer, wire)
        await self._settle(exchange)
        return JSONResponse(wire.answer(answer.response), headers=self._headers(exchange))

    async def close(self, exchange: Exchange, status: int, headers: MutableHeaders) -> None:
        """As any response starts: its `headers`, and for one that is not a stream, the
        settlement and the audit record."""
        headers["x-raygate-request-id"] = exchange.request_id
        if "x-raygate-overhead-ms" not in headers:  # an error, or not a model route
            headers["x-raygate-overhead-ms"] = f"{exchange.overhead_ms():.2f}"
        if self._replica is not None:
            headers["x-raygate-replica"] = self._replica
        if exchange.path.startswith("/v1/"):
            headers["x-raygate-cache"] = exchange.cache_phase or "off"
            if exchange.similarity is not None:
                headers["x-raygate-similarity"] = f"{exchange.similarity:.4f}"
            if exchange.cache_replica is not None:
                headers["x-raygate-cache-replica"] = exchange.cache_replica
        if exchange.streaming:
            return  # its record is written when the stream ends
        await self._settle(exchange)
        if exchange.route is None:
            exchange.tried = headers.get(ROUTE_HEADER)
        if _audited(exchange.path):
            exchange.status = status
            await self.account(exchange)

    async def aclose(self) -> None:
        """Flush the audit trail and close the meter's connections (replica shutdown)."""
        await self._meter.aclose()
        if self.audit is not None:
            await self.audit.aclose()

    def _stream(
        self, exchange: Exchange, answer: RoutedStream[_C], wire: Wire[Any, _C]
    ) -> Response:
        exchange.streaming = True

        async def finished(error: GatewayError | None) -> None:
            exchange.status = 200  # the status the client got; what went wrong is the code
            exchange.error_code = error.code if error is not None else None
            await self._settle(exchange)
            await self.account(exchange)

        return sse_response(
            wire.stream(answer.chunks),
            error_event=wire.error_event,
            headers=self._headers(exchange),
            request_id=exchange.request_id,
            on_finish=finished,
        )

    def _headers(self, exchange: Exchange) -> dict[str, str]:
        headers: dict[str, str] = {}
        if exchange.route is not None:
            headers[ROUTE_HEADER] = exchange.route.header()
            if exchange.route.dropped:  # parameters the target could not honour (drop_params)
                headers["x-raygate-dropped-params"] = ",".join(exchange.route.dropped)
            headers["x-raygate-overhead-ms"] = f"{exchange.overhead_ms():.2f}"
        if exchange.allowance is not None:
            headers.update(exchange.allowance.headers)
        if exchange.cost_usd is not None:
            headers["x-raygate-cost-usd"] = f"{exchange.cost_usd:.8f}"
        if exchange.cost_avoided_usd is not None:
            headers["x-raygate-cost-avoided-usd"] = f"{exchange.cost_avoided_usd:.8f}"
        return headers

    async def _settle(self, exchange: Exchange) -> None:
        """Charge what an upstream answered, once; give back what nothing (or the cache)
        answered. A failure here (the budget database or the limit store down) costs the
        caller nothing already answered: it is logged and recorded as the request's error
        code, and the audit record is still written."""
        allowance = exchange.allowance
        if allowance is None or allowance.done:
            return
        try:
            if exchange.route is None or exchange.answered_from_cache:
                await self._meter.cancel(allowance)
                return
            exchange.cost_usd = await self._meter.settle(
                allowance, exchange.route.target, exchange.usage
            )
        except Exception:
            log.exception("settling request %s failed", exchange.request_id)
            allowance.done = True
            exchange.error_code = exchange.error_code or ACCOUNTING_FAILED

    async def account(self, exchange: Exchange) -> None:
        """The finished request's metrics and audit record (routes that answer without
        `respond`, such as MCP's, call it once their response is sent)."""
        latency_ms = exchange.elapsed_ms()
        if self._metrics is not None:
            self._metrics.record(exchange, latency_ms)
        if self.audit is not None:
            await self.audit.record(exchange.record(latency_ms))


def _audited(path: str) -> bool:
    if path in _UNAUDITED:
        return False
    return not path.startswith(_UNAUDITED_PREFIX) or path.startswith(_AUDITED_UNDER_IT)
