"""The admission stage: who is calling, whether the body is acceptable, whether they may use
the model it names, and whether their rate limits and budget allow the call.

Nothing reaches the policy, the cache or an upstream before this stage passed: the caller is
authenticated (401); the body read within `limits.max_body_bytes` (413, declared and actual
length) and `limits.body_timeout_s` (408: a client that trickles its body holds no slot);
validated as the route's wire model (400 naming the field); the model alias checked (404)
against the caller's access grant (403); and the meter's allowance taken (429 with
Retry-After, or `insufficient_quota`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel

from gateway.accounting.meter import Meter
from gateway.api.errors import validated
from gateway.api.exchange import Exchange, prompt_text
from gateway.config import GatewayConfig, LimitsConfig
from gateway.errors import ModelNotFound
from gateway.identity.principal import Principal
from gateway.identity.service import Identity
from gateway.limits.body import read_body
from gateway.protocol.anthropic import CountTokensRequest, MessagesRequest
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Model,
    ModelList,
)
from gateway.protocol.responses import ResponsesRequest
from gateway.providers.keys import KeyedConfig
from gateway.routing.config import ModelAlias

# The bodies of the model routes: each names a model alias.
_Body = TypeVar(
    "_Body",
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    MessagesRequest,
    CountTokensRequest,
    ResponsesRequest,
)


class Admission:
    """Admits requests to the model routes; `models` are the enabled aliases (a provider
    switched on by a key set at run time enables its aliases: `KeyedConfig`)."""

    def __init__(
        self,
        identity: Identity,
        config: KeyedConfig,
        meter: Meter,
        *,
        limits: LimitsConfig,
    ) -> None:
        self.identity = identity
        self.models: Mapping[str, ModelAlias] = config.current.enabled_models()
        self._config = config
        self._meter = meter
        self._limits = limits
        config.on_change(self._keys_changed)

    async def _keys_changed(self, config: GatewayConfig) -> None:
        self.models = config.enabled_models()

    async def caller(self, request: Request) -> Principal:
        """The authenticated caller, kept with their access grant on the request's exchange."""
        exchange: Exchange = request.state.exchange
        await self._config.fresh()  # the provider keys set at run time, at most once per interval
        principal = await self.identity.caller(request.headers, exchange.client_address)
        exchange.principal = principal
        exchange.grant = self.identity.grant(principal)
        return principal

    async def admit(
        self, request: Request, model: type[_Body], *, metered: bool = True
    ) -> tuple[Exchange, _Body]:
        """The request's exchange and its body as `model`, once the caller may send it;
        `metered`: a request that calls no upstream takes no allowance."""
        exchange: Exchange = request.state.exchange
        principal = await self.caller(request)
        body = validated(model, await self._read_body(request))
        name = body.model
        if name not in self.models:
            raise ModelNotFound(
                f"The model {name!r} does not exist or you do not have access to it.",
                param="model",
            )
        exchange.model = name
        exchange.prompt = prompt_text(body)
        assert exchange.grant is not None  # resolved with the principal, above
        exchange.grant.check(principal, name)
        if not metered:
            return exchange, body
        exchange.allowance = await self._meter.admit(
            principal,
            name,
            [t.label for t in self.models[name].targets],
            prompt_tokens=len(exchange.prompt or "") // 4 + 1,
            max_tokens=_max_tokens(body),
        )
        return exchange, body

    def visible_models(self, principal: Principal) -> ModelList:
        """The aliases this caller may use."""
        grant = self.identity.grant(principal)
        return ModelList(
            data=[Model(id=alias) for alias in self.models if grant.allows(principal, alias)]
        )

    async def _read_body(self, request: Request) -> bytes:
        return await read_body(
            request.stream(),
            limit=self._limits.max_body_bytes,
            timeout_s=self._limits.body_timeout_s,
            declared_length=request.headers.get("content-length"),
        )


def _max_tokens(body: BaseModel) -> int | None:
    if isinstance(body, EmbeddingRequest):
        return 0
    if isinstance(body, ChatCompletionRequest):
        return body.max_completion_tokens or body.max_tokens
    if isinstance(body, CompletionRequest | MessagesRequest):
        return body.max_tokens
    if isinstance(body, ResponsesRequest):
        return body.max_output_tokens
    return None
