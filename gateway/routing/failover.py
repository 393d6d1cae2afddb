"""Failover: try an alias's targets, in the strategy's order, until one starts an answer.

Each target is tried in turn, skipping any whose circuit breaker is open or whose provider
fails its health checks (noted in the route as `target:circuit_open` / `target:unhealthy`):

* a retryable failure (connect error, 429, 5xx, timeout) moves on to the next target at once;
* a non-retryable one is raised, unless the alias names it in `fallback_on` (then that target
  is not tried again for this request, and the next one is);
* with `retry.max_attempts` > 1, once the chain is exhausted it is tried again after a
  full-jitter backoff (and at least the upstream's Retry-After, when that is within
  `max_retry_after`; a longer one takes the target out for this request), until attempts run
  out or the request's `deadline` passes. The first pass over the chain is always completed.

When every target is out of rotation, the request is not failed at once: the open target
whose cooldown ends first is probed early with it (its breaker goes half-open), so an alias
whose only target had a burst of failures answers again as soon as the target does. At most
`half_open_probes` such probes per target are in flight at once: concurrent requests, and
requests when every provider fails its health checks, fail fast with a 503
`circuit_open` and Retry-After: 1 instead of piling onto an upstream that is failing or
recovering.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.errors import GatewayError, PermissionDenied, UpstreamUnavailable, is_retryable
from gateway.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.providers.base import Provider
from gateway.routing.breaker import Permit
from gateway.routing.config import ModelAlias, RetryPolicy
from gateway.routing.context import RouteContext, admits
from gateway.routing.health import OutlierDetector
from gateway.routing.retry import Backoff, fallback_reason, retry_after_s
from gateway.routing.strategies import Candidate, Strategy
from gateway.routing.targets import Attempt, TargetState

log = logging.getLogger(__name__)

ROUTE_HEADER = "x-raygate-route"  # on answers (`Route.header()`) and on routing failures

_Req = TypeVar("_Req", ChatCompletionRequest, CompletionRequest, EmbeddingRequest)
_T = TypeVar("_T")


@dataclass(slots=True)
class Route:
    """Which target answered (and which replica, for a local model), which failed or were
    skipped before it, how long the upstream took to answer (to its first chunk, for
    streams), and which request parameters it was sent without."""

    target: str
    failed: list[str] = field(default_factory=list)
    upstream_ms: float = 0.0
    replica: str | None = None
    dropped: list[str] = field(default_factory=list)
    """Parameters removed because the target could not honour them (`drop_params`)."""

    def header(self) -> str:
        """The `x-raygate-route` value: `provider/model` (`@replica` for a local model), then
        `; tried=` earlier failures."""
        answered = f"{self.target}@{self.replica}" if self.replica else self.target
        if not self.failed:
            return answered
        return f"{answered}; tried={','.join(self.failed)}"


@dataclass(frozen=True, slots=True)
class AliasPlan:
    """An alias with what routing needs to serve it: candidates, strategy, retry policy."""

    name: str
    alias: ModelAlias
    candidates: list[Candidate]
    strategy: Strategy
    retry: RetryPolicy
    backoff: Backoff

    def order(self, context: RouteContext | None) -> list[Candidate]:
        """The targets this caller may use, in the order to try them; PermissionDenied when
        the alias or every one of its targets is closed to the caller."""
        if not admits(self.alias.when, self.alias.unless, context):
            raise PermissionDenied(
                f"The model {self.name!r} is not available to you.", code="model_not_permitted"
            )
        allowed = [c for c in self.candidates if admits(c.target.when, c.target.unless, context)]
        if not allowed:
            raise PermissionDenied(
                f"No target of model {self.name!r} may serve your requests.",
                code="no_permitted_target",
            )
        return self.strategy.order(allowed)


@dataclass(slots=True)
class Committed(Generic[_T]):
    """The start of an answer (`value`), its route, and the attempt still to be finished."""

    value: _T
    route: Route
    attempt: Attempt


@dataclass(slots=True)
class _Tries(Generic[_T]):
    """What one request went through: notes for its route, and targets ruled out for it."""

    failed: list[str] = field(default_factory=list)  # `label:503`, `label:circuit_open`
    skipped: set[str] = field(default_factory=set)
    retired: set[str] = field(default_factory=set)  # not tried again for this request
    # This request's Retry-Afters, per target; other requests need not wait for them.
    not_before: dict[str, float] = field(default_factory=dict)
    last: GatewayError | None = None
    refusal: Committed[_T] | None = None


class Failover:
    """Runs each request's attempts over the router's shared target state."""

    def __init__(
        self,
        providers: dict[str, Provider],
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        outliers: OutlierDetector,
        in_rotation: Callable[[TargetState], bool],
    ) -> None:
        self._providers = providers
        self._clock = clock
        self._sleep = sleep
        self._outliers = outliers
        self._in_rotation = in_rotation

    async def commit(
        self,
        plan: AliasPlan,
        request: _Req,
        context: RouteContext | None,
        start: Callable[[Provider, _Req], Awaitable[_T]],
        *,
        refused: Callable[[_T], bool] | None = None,
    ) -> Committed[_T]:
        """Try targets until `start` succeeds on one; its value, route and open attempt.

        `refused(value)` says whether a value is a content-filter refusal, which moves on to
        the next target when the alias has `content_filter` in `fallback_on` (the last
        refusal is returned when no other target answers).
        """
        tries: _Tries[_T] = _Tries()
        try:
            return await self._commit(plan, request, context, start, refused, tries)
        except GatewayError as exc:
            if tries.failed:  # the client learns what was tried, as from an answer
                exc.headers = {**exc.headers, ROUTE_HEADER: "tried=" + ",".join(tries.failed)}
            raise

    async def _commit(
        self,
        plan: AliasPlan,
        request: _Req,
        context: RouteContext | None,
        start: Callable[[Provider, _Req], Awaitable[_T]],
        refused: Callable[[_T], bool] | None,
        tries: _Tries[_T],
    ) -> Committed[_T]:
        order = plan.order(context)
        began = self._clock()
        for round_no in range(plan.retry.max_attempts):
            if round_no:
                wait = self._retry_wait(plan, round_no, order, tries, began)
                if wait is None:
                    break
                await self._sleep(wait)
            tried = False
            for candidate in order:
                label = candidate.state.label
                if label in tries.retired or self._clock() < tries.not_before.get(label, -math.inf):
                    continue
                if round_no and self._clock() >= began + plan.retry.deadline:
                    break
                permit = self._admit(candidate.state, tries)
                if permit is None:
                    continue
                tried = True
                committed = await self._attempt(
                    plan, candidate, permit, request, start, refused, tries
                )
                if committed is not None:
                    return committed
            if not tried and round_no == 0:
                # Nothing in rotation. One request at a time probes the target due back
                # soonest; the rest fail fast instead of piling onto a failing upstream.
                early = self._probe_early(order, tries)
                if early is not None:
                    tried = True
                    committed = await self._attempt(plan, *early, request, start, refused, tries)
                    if committed is not None:
                        return committed
            if not tried:
                break  # everything left is out of rotation: waiting would not change that
        if tries.refusal is not None:
            return tries.refusal
        raise self._exhausted(plan.name, tries)

    async def _attempt(
        self,
        plan: AliasPlan,
        candidate: Candidate,
        permit: Permit,
        request: _Req,
        start: Callable[[Provider, _Req], Awaitable[_T]],
        refused: Callable[[_T], bool] | None,
        tries: _Tries[_T],
    ) -> Committed[_T] | None:
        """One call to one target: committed, or None to go on to the next target."""
        state = candidate.state
        label = state.label
        attempt = Attempt(state, permit)
        upstream = request.model_copy(update={"model": candidate.target.model})
        provider = self._providers[state.provider]
        started = self._clock()
        try:
            # Fitted to this target before the call: a parameter it cannot honour is refused
            # (or dropped, per the alias's and provider's drop_params) without a round trip.
            conformed = provider.conform(upstream, drop=plan.alias.drop_params)
            value = await start(provider, conformed.request)
        except GatewayError as exc:
            tries.last = exc
            tries.failed.append(f"{label}:{exc.status}")
            if is_retryable(exc):
                self.count_failure(attempt)
                self._note_retry_after(exc, label, plan.retry, tries)
                return None
            attempt.abandoned()  # the request's fault, not the target's
            tries.retired.add(label)
            if fallback_reason(exc) in plan.alias.fallback_on:
                return None
            raise
        except BaseException:
            attempt.abandoned()
            raise
        upstream_ms = (self._clock() - started) * 1000
        state.observe_latency(upstream_ms)
        route = Route(label, list(tries.failed), upstream_ms, dropped=conformed.dropped)
        committed = Committed(value, route, attempt)
        if refused is not None and "content_filter" in plan.alias.fallback_on and refused(value):
            # The target works; it declined this prompt. Another target may not.
            attempt.succeeded()
            tries.failed.append(f"{label}:content_filter")
            tries.retired.add(label)
            tries.refusal = committed
            return None
        return committed

    def _admit(self, state: TargetState, tries: _Tries[_T]) -> Permit | None:
        """The breaker's leave for this target, or None (noted once) when it is out."""
        in_rotation = self._in_rotation(state)
        permit = state.breaker.admit() if in_rotation else None
        if permit is None and state.label not in tries.skipped:
            tries.skipped.add(state.label)
            tries.failed.append(f"{state.label}:{'circuit_open' if in_rotation else 'unhealthy'}")
        return permit

    def _probe_early(
        self, order: list[Candidate], tries: _Tries[_T]
    ) -> tuple[Candidate, Permit] | None:
        """An early probe of the open target whose cooldown ends first, unless a probe of
        it is already in flight. Targets its health checks fail are left alone."""
        due = [
            (probe_at, index, candidate)
            for index, candidate in enumerate(order)
            if candidate.state.label not in tries.retired
            and self._in_rotation(candidate.state)
            and (probe_at := candidate.state.breaker.next_probe_at()) is not None
        ]
        if not due:
            return None
        _, _, candidate = min(due, key=lambda item: item[:2])
        permit = candidate.state.breaker.admit_early()
        if permit is None:
            return None
        # It is being tried after all: the route should not call it skipped.
        note = f"{candidate.state.label}:circuit_open"
        if note in tries.failed:
            tries.failed.remove(note)
        return candidate, permit

    def count_failure(self, attempt: Attempt) -> None:
        """Finish an attempt as a failure of its target (breaker and passive ejection)."""
        attempt.failed()
        self._outliers.after_failure(attempt.target)

    def _retry_wait(
        self,
        plan: AliasPlan,
        round_no: int,
        order: list[Candidate],
        tries: _Tries[_T],
        began: float,
    ) -> float | None:
        """Seconds to wait before retry round `round_no`, or None when there is none."""
        now = self._clock()
        remaining = [c.state.label for c in order if c.state.label not in tries.retired]
        if not remaining:
            return None
        # The backoff, and at least until one target's Retry-After has passed.
        allowed_in = min(max(tries.not_before.get(label, now) - now, 0.0) for label in remaining)
        wait = max(plan.backoff.delay(round_no - 1), allowed_in)
        if now + wait >= began + plan.retry.deadline:
            return None
        return wait

    def _note_retry_after(
        self, error: GatewayError, label: str, policy: RetryPolicy, tries: _Tries[_T]
    ) -> None:
        retry_after = retry_after_s(error)
        if retry_after is None:
            return
        if retry_after > policy.max_retry_after:
            tries.retired.add(label)  # longer than this request is willing to hold its client
        else:
            tries.not_before[label] = self._clock() + retry_after

    def _exhausted(self, alias: str, tries: _Tries[_T]) -> GatewayError:
        failed, last = tries.failed, tries.last
        if last is None:
            return self._all_out_of_rotation(alias, failed)
        log.warning("every target of %r failed: %s", alias, ", ".join(failed))
        if len(failed) > 1:
            last.message = f"{last.message} (every target of {alias!r} failed: {', '.join(failed)})"
        return last

    def _all_out_of_rotation(self, alias: str, failed: list[str]) -> GatewayError:
        # Every target left is being probed or fails its health checks: either is settled
        # within moments, so the client is asked back after a second.
        return UpstreamUnavailable(
            f"Every target of model {alias!r} is out of rotation ({', '.join(failed)}); "
            "try again shortly.",
            code="circuit_open",
            headers={"retry-after": "1"},
        )
