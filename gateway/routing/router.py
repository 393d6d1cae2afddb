"""The router: a model alias in, an answer from the first target that can give one out.

The alias's strategy (strategies.py) orders the targets the caller may use; failover.py tries
them in that order with retries, past open circuit breakers (breaker.py) and unhealthy
providers (health.py). Streams commit on the first chunk: a failure before it, the first-token
timeout included, falls over like any other; a failure after it belongs to the client and is
raised as it is (the API ends the stream with an error event).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from gateway.config import ConfigError, GatewayConfig
from gateway.errors import GatewayError, ModelNotFound, UpstreamError, is_retryable
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Model,
    ModelList,
)
from gateway.providers.base import Provider
from gateway.providers.local import served_by
from gateway.providers.registry import build_provider
from gateway.routing.breaker import BreakerState, CircuitBreaker, Transition
from gateway.routing.config import HealthCheck, ModelAlias
from gateway.routing.context import RouteContext
from gateway.routing.failover import AliasPlan, Failover, Route
from gateway.routing.health import HealthMonitor, HealthProbe, HttpHealthProbe, OutlierDetector
from gateway.routing.pricing import PriceLookup, default_prices
from gateway.routing.retry import Backoff
from gateway.routing.routed import Routed, RoutedStream, open_routed
from gateway.routing.status import (
    AliasStatus,
    Health,
    RoutingStatus,
    TargetStatus,
    TransitionStatus,
)
from gateway.routing.strategies import Candidate, strategy_for
from gateway.routing.targets import TargetState

__all__ = ["Route", "RouteContext", "Routed", "RoutedStream", "Router"]

log = logging.getLogger(__name__)

_Req = TypeVar("_Req", ChatCompletionRequest, CompletionRequest, EmbeddingRequest)
_Resp = TypeVar("_Resp", bound=BaseModel)

_RECENT_TRANSITIONS = 100


class Router:
    """Routes canonical (OpenAI-shaped) requests over the configured targets.

    Time, sleeping and randomness are injectable (`clock`, `sleep`, `rng`) so that tests
    drive backoff, breakers and weighted picks without real waits. `prices` ranks targets for
    the `cost` strategy (default: the config's own prices, then the accounting price table);
    `health_probe` runs the active checks. Breakers, latencies and
    health are this router's own: each Serve replica keeps its own view.
    """

    def __init__(
        self,
        config: GatewayConfig,
        providers: dict[str, Provider] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        prices: PriceLookup | None = None,
        health_probe: HealthProbe | None = None,
    ) -> None:
        self._providers = (
            providers
            if providers is not None
            else {name: build_provider(name, p) for name, p in config.enabled_providers().items()}
        )
        self._clock = clock
        self._config = config.routing
        self._transitions: deque[Transition] = deque(maxlen=_RECENT_TRANSITIONS)
        self._listeners: list[Callable[[Transition], None]] = []
        self._targets: dict[str, TargetState] = {}
        rng = rng or random.Random()
        prices = prices or default_prices(config)
        self._plans = {
            name: self._plan_of(name, alias, rng, prices)
            for name, alias in config.enabled_models().items()
        }
        self._health = HealthMonitor(
            self._health_checks(config),
            health_probe or HttpHealthProbe(),
            self._health_changed,
            sleep=sleep,
        )
        self._failover = Failover(
            self._providers,
            clock=clock,
            sleep=sleep,
            outliers=OutlierDetector(config.routing.outlier),
            in_rotation=lambda state: self._health.healthy(state.provider),
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the active health checks (when any are configured) on the running loop."""
        self._health.start()

    async def aclose(self) -> None:
        """Stop the health checks and close every provider's connection pool."""
        await self._health.aclose()
        for provider in self._providers.values():
            await provider.aclose()

    async def not_ready(self) -> list[str]:
        """What cannot answer yet (local models still starting); empty when ready."""
        waiting: list[str] = []
        for provider in self._providers.values():
            check = getattr(provider, "not_ready", None)  # providers that start (local models)
            if check is not None:
                waiting += await check()
        return waiting

    async def check_health(self) -> None:
        """Run every configured active health check once, now (the loop started by `start()`
        does this on each provider's interval)."""
        await self._health.check_once()

    def subscribe(self, listener: Callable[[Transition], None]) -> None:
        """Call `listener` on every breaker transition (metrics, benchmarks)."""
        self._listeners.append(listener)

    # --- the model surface --------------------------------------------------------------------

    def models(self) -> ModelList:
        """The aliases clients may ask for."""
        return ModelList(data=[Model(id=alias) for alias in self._plans])

    def alias(self, name: str) -> ModelAlias:
        """The alias for a model name, or ModelNotFound."""
        return self._plan(name).alias

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]:
        """A whole chat completion from the first target that gives one."""
        return await self._first_answer(request, context, lambda p, r: p.chat(r))

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]:
        """A whole legacy completion."""
        return await self._first_answer(request, context, lambda p, r: p.completion(r))

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]:
        """Embeddings from the first target that gives them."""
        return await self._first_answer(request, context, lambda p, r: p.embeddings(r))

    async def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[ChatCompletionChunk]:
        """A chat stream from the first target that starts one: returned once its first
        chunk is in hand (a failure before that falls over, or is raised here)."""
        return await open_routed(
            self._first_stream(request, context, lambda p, r: p.chat_stream(r))
        )

    async def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[Completion]:
        """A legacy completion stream, as `chat_stream`."""
        return await open_routed(
            self._first_stream(request, context, lambda p, r: p.completion_stream(r))
        )

    # --- status -------------------------------------------------------------------------------

    def status(self) -> RoutingStatus:
        """Every alias's strategy; every target's breaker, load, latency and health; and the
        recent breaker transitions. This router's (this replica's) view."""
        now = self._clock()
        return RoutingStatus(
            aliases={
                name: AliasStatus(
                    strategy=plan.alias.strategy, targets=[c.state.label for c in plan.candidates]
                )
                for name, plan in self._plans.items()
            },
            targets=[self._target_status(state, now) for state in self._targets.values()],
            transitions=[
                TransitionStatus(
                    target=t.target,
                    before=t.before,
                    after=t.after,
                    reason=t.reason,
                    ago_s=now - t.at,
                )
                for t in self._transitions
            ],
        )

    async def routing_status(self) -> RoutingStatus:
        """`status()`, awaitable like every other `gateway.api.Backend` call."""
        return self.status()

    # --- the request path ---------------------------------------------------------------------

    async def _first_answer(
        self,
        request: _Req,
        context: RouteContext | None,
        call: Callable[[Provider, _Req], Awaitable[_Resp]],
    ) -> Routed[_Resp]:
        plan = self._plan(request.model)
        committed = await self._failover.commit(
            plan, request, context, call, refused=_content_filtered
        )
        committed.attempt.succeeded()
        committed.route.replica = served_by(committed.value)
        response = committed.value.model_copy(update={"model": request.model})
        return Routed(response, committed.route)

    async def _first_stream(
        self,
        request: _Req,
        context: RouteContext | None,
        open_stream: Callable[[Provider, _Req], AsyncIterator[_Resp]],
    ) -> AsyncGenerator[Route | _Resp, None]:
        # The route first, then the chunks: `open_routed` splits them.
        async def first_chunk(provider: Provider, upstream: _Req) -> tuple[_Resp, Any]:
            stream = open_stream(provider, upstream)
            try:
                return await anext(stream), stream
            except StopAsyncIteration:
                raise UpstreamError(f"upstream {provider.name!r} sent an empty stream") from None
            except BaseException:
                await stream.aclose()  # type: ignore[attr-defined]
                raise

        plan = self._plan(request.model)
        committed = await self._failover.commit(plan, request, context, first_chunk)
        first, stream = committed.value
        committed.route.replica = served_by(first)
        attempt = committed.attempt
        try:
            yield committed.route
            yield _renamed(first, request.model)
            async for chunk in stream:
                yield _renamed(chunk, request.model)
        except GatewayError as exc:
            # Committed: the client gets this error, and the target answers for it.
            if is_retryable(exc):
                self._failover.count_failure(attempt)
            else:
                attempt.abandoned()
            raise
        except BaseException:
            attempt.abandoned()  # the client went away: no verdict on the target
            raise
        else:
            attempt.succeeded()
        finally:
            await stream.aclose()

    def _plan(self, name: str) -> AliasPlan:
        plan = self._plans.get(name)
        if plan is None:
            raise ModelNotFound(
                f"The model {name!r} does not exist or you do not have access to it.",
                param="model",
            )
        return plan

    # --- construction, health and transitions -------------------------------------------------

    def _plan_of(
        self, name: str, alias: ModelAlias, rng: random.Random, prices: PriceLookup
    ) -> AliasPlan:
        retry = self._config.retry_for(alias)
        return AliasPlan(
            name=name,
            alias=alias,
            candidates=[
                Candidate(t, self._target_state(t.label, t.provider)) for t in alias.targets
            ],
            strategy=strategy_for(alias.strategy, rng=rng, prices=prices),
            retry=retry,
            backoff=Backoff(retry, rng),
        )

    def _target_state(self, label: str, provider: str) -> TargetState:
        # One state per distinct target, whichever aliases list it.
        state = self._targets.get(label)
        if state is None:
            breaker = CircuitBreaker(
                label, self._config.breaker, clock=self._clock, on_transition=self._transition
            )
            state = TargetState(label, provider, breaker, self._config.latency_alpha)
            self._targets[label] = state
        return state

    def _transition(self, transition: Transition) -> None:
        log.warning(
            "breaker of %s: %s -> %s (%s)",
            transition.target,
            transition.before,
            transition.after,
            transition.reason,
        )
        self._transitions.append(transition)
        for listener in self._listeners:
            listener(transition)

    def _health_checks(self, config: GatewayConfig) -> dict[str, tuple[Provider, HealthCheck]]:
        checks = {}
        for name, check in config.routing.health_checks.items():
            if name not in config.providers:
                raise ConfigError(f"routing.health_checks.{name}: unknown provider {name!r}")
            if name in self._providers:  # a disabled provider has nothing to check
                checks[name] = (self._providers[name], check)
        return checks

    def _health_changed(self, provider: str, healthy: bool) -> None:
        for state in self._targets.values():
            if state.provider != provider:
                continue
            if healthy:
                state.breaker.probe_now("health_check_passed")
            else:
                state.breaker.trip("health_check_failed")

    def _target_status(self, state: TargetState, now: float) -> TargetStatus:
        breaker = state.breaker
        next_probe = breaker.next_probe_at()
        return TargetStatus(
            target=state.label,
            provider=state.provider,
            breaker=breaker.state,
            open_reason=breaker.open_reason,
            failure_rate=round(breaker.failure_rate(), 4),
            window_requests=breaker.window_requests(),
            trips=breaker.trips,
            next_probe_in_s=None if next_probe is None else max(next_probe - now, 0.0),
            in_flight=state.in_flight,
            latency_ewma_ms=state.latency_ewma_ms,
            consecutive_failures=state.consecutive_failures,
            health=self._health_of(state),
        )

    def _health_of(self, state: TargetState) -> Health:
        if not self._health.healthy(state.provider):
            return "unhealthy"
        if state.breaker.state is BreakerState.OPEN and state.breaker.open_reason == "ejected":
            return "ejected"
        return "healthy" if self._health.checked(state.provider) else "unchecked"


def _renamed(chunk: _Resp, alias: str) -> _Resp:
    # Clients see the alias they asked for, never the upstream's model name.
    chunk.model = alias  # type: ignore[attr-defined]
    return chunk


def _content_filtered(response: Any) -> bool:
    return any(
        getattr(choice, "finish_reason", None) == "content_filter"
        for choice in getattr(response, "choices", None) or ()
    )
